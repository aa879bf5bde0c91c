import type { Connector, LocalSwarm, SwarmRefusal, WireConnection } from '../wire';
import { Bitfield, PeerConnection, wireErrorCodes } from '../wire';
import { requestAll, requestMore } from './download';
import type { PeerCandidate } from './events';
import { slotPolicy } from './pieceSelection';
import type { Peer, SwarmState } from './swarmState';
import { closePeer, dropPeer, gain, isClosed, isComplete } from './swarmState';

/*
 * Who is connected: admitting incoming peers, dialing candidates, turning a finished
 * handshake into a peer, and forgetting closed or idle connections. Handlers of the
 * scheduler's loop (see `scheduler.ts`).
 */

const slots = (s: SwarmState) => {
  let inbound = 0;
  let outbound = 0;
  for (const peer of s.peers.values()) {
    if (peer.direction === 'in') inbound += 1;
    else outbound += 1;
  }
  for (const pending of s.pending.values()) {
    if (pending.direction === 'in') inbound += 1;
    else outbound += 1;
  }
  outbound += s.dialing.size;
  return {
    max: s.config.maxConnections,
    reservedOutbound: s.config.reservedOutbound,
    reservedInbound: s.config.reservedInbound,
    inbound,
    outbound,
    dialing: canEverDial(s),
  };
};

const canEverDial = (s: SwarmState): boolean =>
  s.state === 'downloading' && (s.options.connect !== undefined || s.options.dial !== undefined);

/** The scheduler's connector: the one given, or TCP (`dial`) wrapped in a `PeerConnection`. */
const connectorOf = (s: SwarmState): Connector => {
  const { connect, dial } = s.options;
  if (connect !== undefined) return connect;
  const open = dial as NonNullable<typeof dial>;
  return (address) =>
    open(address).then(
      (socket) =>
        new PeerConnection(socket, {
          ...s.options.connection,
          peerId: s.options.peerId,
          origin: s.isOrigin,
        }),
    );
};

const isBlacklisted = (s: SwarmState, id: string): boolean => {
  const until = s.blacklist.get(id);
  if (until === undefined) return false;
  if (until > s.now()) return true;
  s.blacklist.delete(id);
  return false;
};

const connectedOrPending = (
  s: SwarmState,
  id: string,
): 'connected' | 'dialing' | 'accepting' | undefined => {
  if (s.peers.has(id)) return 'connected';
  if (s.dialing.has(id)) return 'dialing';
  for (const pending of s.pending.values()) {
    if (pending.id === id) return pending.direction === 'out' ? 'dialing' : 'accepting';
  }
  return undefined;
};

/** An incoming peer's handshake: our swarm, or why not. */
export const admitIncoming = (
  s: SwarmState,
  conn: WireConnection,
  id: string,
  origin: boolean,
): LocalSwarm | SwarmRefusal => {
  const refuse = (refuse: number, message: string): SwarmRefusal => ({ refuse, message });
  if (id === s.selfId) return refuse(wireErrorCodes.DUPLICATE_CONNECTION, 'that is us');
  if (isBlacklisted(s, id)) return refuse(wireErrorCodes.OVERLOADED, 'blacklisted');
  const existing = connectedOrPending(s, id);
  // Both sides dialed each other: the dial of the smaller peer id wins, on both sides.
  if (existing === 'connected' || existing === 'accepting' || (existing && id > s.selfId)) {
    return refuse(wireErrorCodes.DUPLICATE_CONNECTION, 'already connected');
  }
  if (!slotPolicy.canAccept(slots(s))) {
    return refuse(wireErrorCodes.OVERLOADED, 'no free connection slot');
  }
  const snapshot = s.source.bitfield();
  s.pending.set(conn, { direction: 'in', id, origin, snapshot });
  listen(s, conn);
  return localSwarm(s, snapshot);
};

/** The tracker (or a test) named peers: remember them and dial while slots are free. */
export const addCandidates = (s: SwarmState, candidates: readonly PeerCandidate[]): void => {
  for (const peer of candidates) {
    if (peer.peerId !== s.selfId) s.candidates.set(peer.peerId, peer);
  }
  maybeDial(s);
};

export const maybeDial = (s: SwarmState): void => {
  if (!canEverDial(s)) return;
  const now = s.now();
  for (const candidate of s.candidates.values()) {
    if (!slotPolicy.canDial(slots(s))) return;
    if (connectedOrPending(s, candidate.peerId) !== undefined) continue;
    if (isBlacklisted(s, candidate.peerId)) continue;
    if ((s.dialBackoff.get(candidate.address) ?? 0) > now) continue;
    dial(s, candidate);
  }
  wantPeersIfStarved(s, now);
};

/**
 * Every candidate has been tried and fewer than half the slots are in use: ask the announce
 * loop for more peers. The simulator found the far tail of a big swarm here: hosts that
 * joined last were refused by peers whose slots had filled, sat at 2–3 connections a blob
 * until the next announce (3 s later, and then 6) and pulled at half their rate.
 */
const wantPeersIfStarved = (s: SwarmState, now: number): void => {
  const every = s.config.starvedAnnounceMs;
  const notify = s.options.onPeersWanted;
  if (notify === undefined || every <= 0 || now - s.peersWantedAt < every) return;
  const inUse = s.peers.size + s.pending.size + s.dialing.size;
  if (2 * inUse >= s.config.maxConnections) return;
  s.peersWantedAt = now;
  notify();
};

export const onDialFailed = (s: SwarmState, candidate: PeerCandidate, reason: string): void => {
  s.dialing.delete(candidate.peerId);
  s.dialBackoff.set(candidate.address, s.now() + s.config.dialBackoffMs);
  s.log.debug({ peer: candidate, reason }, 'dial failed');
};

/**
 * Dials a candidate and starts the handshake; the outcome comes back as a `dialed` or
 * `dialFailed` event. The only place the scheduler opens a connection (through its connector).
 */
const dial = (s: SwarmState, candidate: PeerCandidate): void => {
  s.dialing.add(candidate.peerId);
  const failed = (reason: string) => s.post({ type: 'dialFailed', candidate, reason });
  connectorOf(s)(candidate.address).then(
    (conn) => {
      if (isClosed(s)) {
        conn.close('swarm closed');
        failed('swarm closed');
        return;
      }
      const snapshot = s.source.bitfield();
      s.dialing.delete(candidate.peerId);
      s.pending.set(conn, {
        direction: 'out',
        id: candidate.peerId,
        origin: candidate.origin,
        snapshot,
      });
      listen(s, conn);
      conn
        .handshake(localSwarm(s, snapshot), {
          expectedPeerId: Buffer.from(candidate.peerId, 'hex'),
        })
        .then((result) => {
          if (result.ok) s.post({ type: 'dialed', candidate, conn, snapshot });
          else failed(result.error.message);
        });
    },
    (error: Error) => failed(error.message),
  );
};

const localSwarm = (s: SwarmState, bitfield: Bitfield): LocalSwarm => ({
  infoHash: s.infoHash,
  length: s.metainfo.length,
  pieceLength: s.metainfo.pieceLength,
  bitfield,
});

/** Every connection event becomes a loop event; listening starts before the handshake ends. */
const listen = (s: SwarmState, conn: WireConnection): void => {
  conn.on('have', (index) => s.post({ type: 'have', conn, index }));
  conn.on('complete', () => s.post({ type: 'peerComplete', conn }));
  conn.on('request', (request) => s.post({ type: 'request', conn, request }));
  conn.on('cancel', (request) => s.post({ type: 'cancel', conn, request }));
  conn.on('piece', (block) => s.post({ type: 'block', conn, block }));
  conn.on('rejected', (request, code) => s.post({ type: 'rejected', conn, request, code }));
  conn.on('close', (reason) => s.post({ type: 'closed', conn, reason }));
};

/**
 * The peer of an open connection. A connection whose handshake finished but whose
 * `dialed`/`accepted` event is still queued is promoted on its first event.
 */
export const peerOf = (s: SwarmState, conn: WireConnection): Peer | undefined => {
  const peer = s.byConn.get(conn);
  if (peer !== undefined) return peer;
  if (s.pending.has(conn) && conn.isOpen) return promote(s, conn);
  return undefined;
};

/** A connection whose handshake finished becomes a peer (unless it duplicates one). */
export const promote = (s: SwarmState, conn: WireConnection): Peer | undefined => {
  const known = s.byConn.get(conn);
  if (known !== undefined) return known;
  const pending = s.pending.get(conn);
  const remote = conn.remote;
  if (pending === undefined || remote === undefined || !conn.isOpen) return undefined;
  s.pending.delete(conn);
  const id = remote.peerId.toString('hex');
  const existing = s.peers.get(id);
  if (existing !== undefined) {
    // Keep the connection dialed by the smaller peer id; both sides choose the same one.
    const dialerOf = (direction: 'in' | 'out') => (direction === 'out' ? s.selfId : id);
    const keepNew =
      dialerOf(pending.direction) !== dialerOf(existing.direction) &&
      dialerOf(pending.direction) < dialerOf(existing.direction);
    if (!keepNew) {
      conn.error(wireErrorCodes.DUPLICATE_CONNECTION, 'already connected');
      return undefined;
    }
    existing.conn.error(wireErrorCodes.DUPLICATE_CONNECTION, 'already connected');
    dropPeer(s, existing);
  }
  const now = s.now();
  const peer: Peer = {
    id,
    conn,
    direction: pending.direction,
    origin: remote.origin,
    has: new Bitfield(s.pieceCount),
    outstanding: new Map(),
    refusedUntil: new Map(),
    busyAnswers: new Map(),
    uploads: 0,
    lastTraffic: now,
    lastBlockAt: now,
    paused: false,
    busyUntil: 0,
  };
  s.peers.set(id, peer);
  s.byConn.set(conn, peer);
  s.stats.connectionsOpened += 1;
  s.lastConnected = now;
  for (const index of remote.bitfield.indices()) gain(s, peer, index);
  // Pieces stored between the handshake's snapshot and now.
  if (s.source.count > pending.snapshot.count) {
    for (let index = 0; index < s.pieceCount; index += 1) {
      if (s.source.has(index) && !pending.snapshot.has(index)) conn.sendHave(index);
    }
  }
  s.log.debug({ peer: id, direction: peer.direction, origin: peer.origin }, 'connected');
  if (isComplete(s) && peer.has.complete) {
    closePeer(s, peer, 'both complete');
    return undefined;
  }
  requestMore(s, peer);
  return peer;
};

export const onClosed = (s: SwarmState, conn: WireConnection, reason: string): void => {
  const pending = s.pending.get(conn);
  if (pending !== undefined) {
    s.pending.delete(conn);
    return;
  }
  const peer = s.byConn.get(conn);
  if (peer === undefined) return;
  s.log.debug({ peer: peer.id, reason }, 'connection closed');
  dropPeer(s, peer);
  maybeDial(s);
  requestAll(s);
};

/** Closes a connection with no piece traffic either way for `idleConnectionMs`. */
export const closeIfIdle = (s: SwarmState, peer: Peer, now: number): void => {
  const idle = s.config.idleConnectionMs;
  if (
    idle > 0 &&
    now - peer.lastTraffic > idle &&
    peer.outstanding.size === 0 &&
    peer.uploads === 0 &&
    peer.conn.servingRequests === 0
  ) {
    closePeer(s, peer, 'idle');
  }
};

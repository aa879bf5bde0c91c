import { wireErrorCodes } from '../wire';
import type { SchedulerEvent } from './events';
import { pickRarest, requestTimeoutOf } from './pieceSelection';
import type { Peer, SwarmState } from './swarmState';
import {
  ban,
  closePeer,
  endWriter,
  forget,
  gain,
  isComplete,
  isDownloading,
  missingPieces,
  shutdown,
} from './swarmState';

/*
 * Getting the blob: what peers have, which pieces to ask whom for (rarest first, agents before
 * origins, endgame), blocks into piece writers, refusals and timeouts, and the whole-blob check
 * at the end. Handlers of the scheduler's loop (see `scheduler.ts`).
 */

// --- what peers have -----------------------------------------------------------------------------

export const onHave = (s: SwarmState, peer: Peer, index: number): void => {
  if (!gain(s, peer, index)) return;
  if (isComplete(s) && peer.has.complete && !peer.origin) {
    closePeer(s, peer, 'both complete');
    return;
  }
  if (s.sink !== undefined && !s.source.has(index)) requestMore(s, peer);
};

export const onPeerComplete = (s: SwarmState, peer: Peer): void => {
  for (let index = 0; index < s.pieceCount; index += 1) gain(s, peer, index);
  if (isComplete(s)) closePeer(s, peer, 'both complete');
  else requestMore(s, peer);
};

// --- asking --------------------------------------------------------------------------------------

/** Fills every pipeline: agents first, so origins see what agents could not give. */
export const requestAll = (s: SwarmState): void => {
  if (!isDownloading(s)) return;
  for (const peer of s.peers.values()) if (!peer.origin) requestMore(s, peer);
  for (const peer of s.peers.values()) if (peer.origin) requestMore(s, peer);
};

/** Fills a peer's request pipeline, rarest pieces first (for origins: rarest among agents). */
export const requestMore = (s: SwarmState, peer: Peer): void => {
  if (!isDownloading(s) || !peer.conn.isOpen) return;
  const limit = peer.origin ? s.config.originPipeline : s.config.pipeline;
  const free = limit - peer.outstanding.size;
  if (free <= 0) return;
  const now = s.now();
  if (peer.busyUntil > now) return;
  const endgame = missingPieces(s) <= s.config.endgameThreshold;
  const perPiece = endgame ? s.config.endgameDuplicates : 1;
  const source = s.source;
  const rank = peer.origin ? s.agentAvailability : s.availability;
  // Origins are the seeders of last resort: ask them only for pieces no connected agent
  // holds, unless the agents give us nothing at all (see `starving`).
  const lastResort = peer.origin && !starving(s);
  const picks = pickRarest({
    count: free,
    pieceCount: s.pieceCount,
    // Only what the peer has and we lack can be eligible.
    candidates: peer.has.missingFrom(
      source.bitfieldView?.() ?? source.bitfield(),
      candidateScratch,
    ),
    random: s.random,
    rank: (index) => rank[index] ?? 0,
    eligible: (index) =>
      (!lastResort || (s.agentAvailability[index] ?? 0) === 0) &&
      peer.has.has(index) &&
      !source.has(index) &&
      !s.writers.has(index) &&
      !peer.outstanding.has(index) &&
      (s.requests.get(index)?.size ?? 0) < perPiece &&
      (peer.refusedUntil.get(index) ?? 0) <= now,
  });
  for (const index of picks) {
    if (!peer.conn.request(index)) {
      // The connection still waits for the answer to a cancelled request for this piece.
      peer.refusedUntil.set(index, now + s.config.busyBackoffMs);
      continue;
    }
    const timeout = requestTimeoutOf(
      source.pieceSize(index),
      s.config.requestTimeoutMs,
      s.config.requestTimeoutPerMiBMs,
    );
    peer.outstanding.set(index, {
      index,
      deadline: now + timeout,
      requestedAt: now,
      writer: undefined,
    });
    let requested = s.requests.get(index);
    if (requested === undefined) s.requests.set(index, (requested = new Set()));
    requested.add(peer);
  }
};

/** Reused by every `requestMore` (it runs to the end before another can start). */
const candidateScratch: number[] = [];

/**
 * Whether the agents give us nothing, so that origins may be asked for pieces agents hold:
 * no agent has a request of ours outstanding, and none sent us a block for `busyBackoffMs`.
 * An agent that answered BUSY is asked again after that long, so agents that are merely
 * busy keep origins out; agents that only refuse (or stall) do not hold the blob up. The
 * answer only matters while some agent holds a missing piece (otherwise origins are asked
 * for every missing piece anyway). O(peers): it runs on every request to an origin.
 */
const starving = (s: SwarmState): boolean => {
  for (const peer of s.peers.values()) {
    if (!peer.origin && peer.outstanding.size > 0) return false;
  }
  return s.now() - s.lastAgentBlockAt >= s.config.busyBackoffMs;
};

// --- receiving -----------------------------------------------------------------------------------

/** A block of one of our requests: into the piece's writer, coalesced. */
export const onBlock = (
  s: SwarmState,
  peer: Peer,
  block: Extract<SchedulerEvent, { type: 'block' }>['block'],
): void => {
  const sink = s.sink;
  if (sink === undefined) return;
  const out = peer.outstanding.get(block.index);
  if (out === undefined) return;
  const now = s.now();
  s.stats.bytesReceived += block.length;
  s.stats.firstByteAt ??= now;
  peer.lastTraffic = now;
  peer.lastBlockAt = now;
  if (!peer.origin) s.lastAgentBlockAt = now;
  if (out.writer === undefined) {
    const owner = s.writers.get(block.index);
    const begun =
      owner === undefined && !sink.has(block.index) ? sink.beginPiece(block.index) : undefined;
    if (begun === undefined || !begun.ok) {
      // Another peer is already sending this piece (endgame), or it is here: cancel ours.
      s.stats.duplicateBytes += block.length;
      peer.conn.cancel(block.index);
      peer.outstanding.delete(block.index);
      s.requests.get(block.index)?.delete(peer);
      requestMore(s, peer);
      return;
    }
    out.writer = begun.value;
    s.writers.set(block.index, { peer, writer: begun.value, requestedAt: out.requestedAt });
  }
  // The writer copies the bytes before returning (they are the socket's read buffer) and
  // writes them in its own staging buffers.
  const writer = out.writer;
  const chunks = block.chunks;
  let room = true;
  if (writer.writeAll !== undefined) room = writer.writeAll(chunks);
  else for (const chunk of chunks) room = writer.write(chunk) && room;
  if (!room && !peer.paused) {
    // The disk is behind: stop reading this peer until the writer has room.
    peer.paused = true;
    peer.conn.pauseReading();
    void writer.drained().then(() => s.post({ type: 'drained', conn: peer.conn }));
  }
  if (block.done) {
    peer.outstanding.delete(block.index);
    s.requests.get(block.index)?.delete(peer);
    endWriter(s, peer, block.index, writer);
    requestMore(s, peer);
  }
};

/** The piece writer that asked us to wait has room: read the peer again. */
export const onDrained = (peer: Peer): void => {
  if (!peer.paused) return;
  peer.paused = false;
  peer.conn.resumeReading();
};

export const onPieceEnded = (
  s: SwarmState,
  event: Extract<SchedulerEvent, { type: 'pieceEnded' }>,
): void => {
  const { index, outcome, writer } = event;
  const entry = s.writers.get(index);
  if (entry?.writer === writer) s.writers.delete(index);
  const peer = entry?.writer === writer ? entry.peer : s.byConn.get(event.conn);
  switch (outcome.kind) {
    case 'stored': {
      const size = s.source.pieceSize(index);
      s.stats.piecesStored += 1;
      s.stats.bytesDownloaded += size;
      if (peer?.origin) s.stats.originBytes += size;
      const requestedAt = entry?.writer === writer ? entry.requestedAt : undefined;
      if (requestedAt !== undefined) {
        s.options.onPieceStored?.({
          index,
          bytes: size,
          latencyMs: s.now() - requestedAt,
          fromOrigin: peer?.origin === true,
        });
      }
      // Duplicates still outstanding elsewhere (endgame) are no longer needed.
      for (const other of s.requests.get(index) ?? []) {
        other.conn.cancel(index);
        other.outstanding.delete(index);
      }
      s.requests.delete(index);
      // Agents that hold the piece are not told (they never ask us for it; we send
      // `complete` when the blob is): about half the `have`s of a swarm. Origins count
      // which agents hold what (their BUSY policy), so they hear of every piece.
      for (const other of s.peers.values()) {
        if (other.origin || (other !== peer && !other.has.has(index))) {
          other.conn.sendHave(index);
        }
      }
      if (s.sink?.allPresent) finalize(s);
      else if (missingPieces(s) <= s.config.endgameThreshold) requestAll(s);
      return;
    }
    case 'bad-hash':
    case 'bad-length':
      s.stats.badPieces += 1;
      if (peer !== undefined) {
        s.log.warn(
          { peer: peer.id, piece: index, outcome: outcome.kind },
          'peer sent a bad piece: blacklisted',
        );
        ban(s, peer.id);
        if (s.byConn.get(peer.conn) === peer) {
          closePeer(s, peer, 'sent a bad piece', wireErrorCodes.PROTOCOL_VIOLATION);
        }
      }
      requestAll(s);
      return;
    case 'io-error':
      s.log.warn({ piece: index, err: outcome.error }, 'cannot write a piece');
      requestAll(s);
      return;
    case 'aborted':
      requestAll(s);
      return;
  }
};

/** The peer refused one of our requests (BUSY, UNAVAILABLE, …): ask elsewhere for a while. */
export const onRejected = (s: SwarmState, peer: Peer, index: number, code: number): void => {
  s.stats.rejections += 1;
  const out = peer.outstanding.get(index);
  if (out !== undefined) {
    peer.outstanding.delete(index);
    forget(s, peer, out);
  }
  const now = s.now();
  peer.refusedUntil.set(index, now + s.config.busyBackoffMs);
  if (code === wireErrorCodes.BUSY) peer.busyUntil = now + s.config.busyPauseMs;
  s.log.debug({ peer: peer.id, piece: index, code }, 'request refused');
  requestMore(s, peer);
};

/**
 * Cancels requests overdue from a peer that has sent nothing for as long as a request may
 * take (a busy peer working through its queue is not a stalled one); they are asked elsewhere.
 */
export const expireRequests = (s: SwarmState, peer: Peer, now: number): void => {
  const silence = now - peer.lastBlockAt;
  for (const out of [...peer.outstanding.values()]) {
    if (out.deadline > now || silence < s.config.requestTimeoutMs) continue;
    s.stats.timeouts += 1;
    peer.conn.cancel(out.index);
    peer.outstanding.delete(out.index);
    forget(s, peer, out);
    peer.refusedUntil.set(out.index, now + s.config.requestTimeoutMs);
  }
};

// --- the whole blob ------------------------------------------------------------------------------

/** Every piece is here: check the whole digest; the outcome comes back as `finalized`. */
export const finalize = (s: SwarmState): void => {
  const sink = s.sink;
  if (sink === undefined || s.state !== 'downloading') return;
  s.state = 'verifying';
  sink.finalize().then(
    (outcome) => s.post({ type: 'finalized', outcome }),
    (error: Error) => {
      s.log.warn({ err: error }, 'cannot finalize the blob');
      s.post({ type: 'finalized', outcome: { kind: 'error' } });
    },
  );
};

export const onFinalized = (
  s: SwarmState,
  outcome: Extract<SchedulerEvent, { type: 'finalized' }>['outcome'],
): void => {
  if (s.state !== 'verifying') return;
  switch (outcome.kind) {
    case 'complete': {
      s.state = 'seeding';
      s.stats.completedAt = s.now();
      s.log.info({ digest: s.metainfo.digest }, 'blob complete: seeding');
      for (const peer of [...s.peers.values()]) {
        if (peer.has.complete) closePeer(s, peer, 'both complete');
        else peer.conn.sendComplete();
      }
      s.resolveDone();
      s.options.onComplete?.();
      return;
    }
    case 'corrupt':
      s.log.warn({ pieces: outcome.badPieces }, 'whole digest failed: pieces fetched again');
      s.state = 'downloading';
      requestAll(s);
      return;
    case 'incomplete':
      s.state = 'downloading';
      requestAll(s);
      return;
    case 'error':
      shutdown(s, 'cannot finalize the blob', 'failed');
      return;
  }
};

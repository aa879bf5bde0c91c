import type { Duplex } from 'node:stream';
import type { Metainfo } from '../metainfo';
import { infoHash as infoHashOf } from '../metainfo';
import type { CancelTimer, Timers } from '../timers';
import type { Bitfield, Connector, PeerConnectionOptions, WireConnection } from '../wire';
import { wireErrorCodes } from '../wire';
import type { SchedulerConfig } from './config';
import { schedulerConfigOf } from './config';
import type { PeerCandidate, SchedulerEvent } from './events';
import type { PieceSink, PieceSource, PieceWriterLike } from './pieceSource';
import { isPieceSink } from './pieceSource';

/*
 * The state of one blob's swarm, and the primitives every handler of the scheduler's loop
 * shares (availability counts, dropping a peer, ending a writer, shutting down). Only the
 * loop's handlers (`admission.ts`, `download.ts`, `upload.ts`, `scheduler.ts`) touch it, one
 * event at a time: asynchronous work reports back through `post`.
 */

/** The pino subset the scheduler logs through. */
export type SchedulerLogger = {
  debug: (object: object, message: string) => void;
  info: (object: object, message: string) => void;
  warn: (object: object, message: string) => void;
};

const quiet: SchedulerLogger = { debug: () => {}, info: () => {}, warn: () => {} };

export type SchedulerState = 'downloading' | 'verifying' | 'seeding' | 'failed' | 'closed';

export type SchedulerOptions = {
  readonly metainfo: Metainfo;
  /** Where pieces come from and (while incomplete) go to. */
  readonly store: PieceSource | PieceSink;
  readonly config?: Partial<SchedulerConfig>;
  /** This host's peer id (20–32 bytes) and whether it is an origin. */
  readonly peerId: Buffer;
  readonly origin?: boolean;
  /** Host-wide connection settings: bandwidth limiters, wire stats, timeouts. */
  readonly connection?: Omit<PeerConnectionOptions, 'peerId' | 'origin'>;
  /** Opens a stream to `host:port`; without it (and `connect`) this peer never dials. */
  readonly dial?: (address: string) => Promise<Duplex>;
  /**
   * Opens a connection to `host:port` (the handshake not started): the port a simulator
   * fills. Default: `dial`, wrapped in a `PeerConnection` with `connection`'s settings.
   */
  readonly connect?: Connector;
  readonly logger?: SchedulerLogger;
  /** Milliseconds, monotonic; default `timers.now`. */
  readonly now?: () => number;
  /** The loop's tick; default the system's timers (a simulator passes its own). */
  readonly timers?: Timers;
  readonly random?: () => number;
  /** Called (inside the loop) when the blob completes and when the scheduler closes. */
  readonly onComplete?: () => void;
  readonly onClose?: (reason: string) => void;
  /** Called (inside the loop) for each piece stored: from request to verified on disk. */
  readonly onPieceStored?: (piece: StoredPiece) => void;
  /**
   * Called (inside the loop, at most every `starvedAnnounceMs`) while the download has fewer
   * than half its connection slots in use and no candidate left to dial: the announce loop
   * should ask the tracker for more peers now rather than at its next interval.
   */
  readonly onPeersWanted?: () => void;
};

/** A piece that verified and was stored, as `onPieceStored` reports it. */
export type StoredPiece = {
  readonly index: number;
  readonly bytes: number;
  readonly latencyMs: number;
  readonly fromOrigin: boolean;
};

export type SchedulerStats = {
  /** Payload bytes received, useful or not, and bytes of pieces that verified. */
  bytesReceived: number;
  bytesDownloaded: number;
  /** Of `bytesDownloaded`, pieces that came from origins. */
  originBytes: number;
  /** Blocks dropped because another peer was already sending the piece (endgame). */
  duplicateBytes: number;
  bytesUploaded: number;
  piecesStored: number;
  badPieces: number;
  timeouts: number;
  rejections: number;
  /** Requests this side answered BUSY (origin policy). */
  busySent: number;
  blacklisted: number;
  connectionsOpened: number;
  startedAt: number;
  firstByteAt: number | undefined;
  completedAt: number | undefined;
};

export type Outstanding = {
  readonly index: number;
  readonly deadline: number;
  /** When it was requested (for the piece latency). */
  readonly requestedAt: number;
  writer: PieceWriterLike | undefined;
};

export type Peer = {
  readonly id: string;
  readonly conn: WireConnection;
  readonly direction: 'in' | 'out';
  readonly origin: boolean;
  /** Our copy of the peer's pieces; availability counts follow its changes. */
  readonly has: Bitfield;
  readonly outstanding: Map<number, Outstanding>;
  /** Pieces not to ask this peer for until the time given (busy, timed out). */
  readonly refusedUntil: Map<number, number>;
  /** Origin side: how often we answered BUSY to this peer, by piece. */
  readonly busyAnswers: Map<number, number>;
  uploads: number;
  lastTraffic: number;
  /** When it last sent us a block: a peer still delivering is slow, not stalled. */
  lastBlockAt: number;
  paused: boolean;
  /** It answered BUSY: no new requests to it before this time. */
  busyUntil: number;
};

/** A connection whose handshake is under way (dialed or admitted), not yet a peer. */
export type Pending = {
  readonly direction: 'in' | 'out';
  readonly id: string;
  readonly origin: boolean;
  readonly snapshot: Bitfield;
};

export type QueuedUpload = {
  readonly peer: Peer;
  readonly index: number;
  readonly begin: number;
  readonly length: number;
  readonly arrival: number;
};

export type SwarmState = {
  readonly options: SchedulerOptions;
  readonly metainfo: Metainfo;
  readonly infoHash: string;
  readonly pieceCount: number;
  readonly config: SchedulerConfig;
  readonly stats: SchedulerStats;
  readonly source: PieceSource;
  /** The store while the blob is incomplete; undefined when only seeding. */
  readonly sink: PieceSink | undefined;
  readonly selfId: string;
  readonly isOrigin: boolean;
  /** Milliseconds, monotonic. */
  readonly now: () => number;
  readonly random: () => number;
  readonly log: SchedulerLogger;
  /** Queues an event for the loop: how asynchronous work reports back. */
  readonly post: (event: SchedulerEvent) => void;
  /** Settle the scheduler's `done`. */
  readonly resolveDone: () => void;
  readonly rejectDone: (error: Error) => void;
  state: SchedulerState;
  /** Stops the loop's tick (set once the tick runs). */
  stopTicking: CancelTimer;
  readonly peers: Map<string, Peer>;
  readonly byConn: Map<WireConnection, Peer>;
  readonly pending: Map<WireConnection, Pending>;
  /** Peer ids being dialed (before a connection object exists). */
  readonly dialing: Set<string>;
  readonly candidates: Map<string, PeerCandidate>;
  readonly blacklist: Map<string, number>;
  readonly dialBackoff: Map<string, number>;
  /** Connected peers holding each piece, all of them and agents only. */
  readonly availability: Uint32Array;
  readonly agentAvailability: Uint32Array;
  /** Peers each missing piece is requested from. */
  readonly requests: Map<number, Set<Peer>>;
  readonly writers: Map<number, { peer: Peer; writer: PieceWriterLike; requestedAt: number }>;
  /** How often each piece was sent (uploads go least-sent first). */
  readonly served: Uint32Array;
  /** Pieces not sent to anyone yet. */
  neverSent: number;
  uploadQueue: QueuedUpload[];
  activeUploads: number;
  arrivals: number;
  lastConnected: number;
  /** When `onPeersWanted` was last called (−∞: never). */
  peersWantedAt: number;
  /** When an agent last sent us a block (see `starving` in `download.ts`). */
  lastAgentBlockAt: number;
};

/** A fresh swarm: downloading into a sink, or seeding a complete source. */
export const createSwarmState = (
  options: SchedulerOptions,
  environment: {
    readonly now: () => number;
    readonly post: (event: SchedulerEvent) => void;
    readonly resolveDone: () => void;
    readonly rejectDone: (error: Error) => void;
  },
): SwarmState => {
  const store = options.store;
  const sink = isPieceSink(store) && !store.complete ? store : undefined;
  const pieceCount = store.pieceCount;
  const now = environment.now();
  return {
    options,
    metainfo: options.metainfo,
    infoHash: infoHashOf(options.metainfo),
    pieceCount,
    config: schedulerConfigOf(options.config),
    stats: {
      bytesReceived: 0,
      bytesDownloaded: 0,
      originBytes: 0,
      duplicateBytes: 0,
      bytesUploaded: 0,
      piecesStored: 0,
      badPieces: 0,
      timeouts: 0,
      rejections: 0,
      busySent: 0,
      blacklisted: 0,
      connectionsOpened: 0,
      startedAt: now,
      firstByteAt: undefined,
      completedAt: undefined,
    },
    source: store,
    sink,
    selfId: options.peerId.toString('hex'),
    isOrigin: options.origin === true,
    now: environment.now,
    random: options.random ?? Math.random,
    log: options.logger ?? quiet,
    post: environment.post,
    resolveDone: environment.resolveDone,
    rejectDone: environment.rejectDone,
    state: sink === undefined ? 'seeding' : 'downloading',
    stopTicking: () => undefined,
    peers: new Map(),
    byConn: new Map(),
    pending: new Map(),
    dialing: new Set(),
    candidates: new Map(),
    blacklist: new Map(),
    dialBackoff: new Map(),
    availability: new Uint32Array(pieceCount),
    agentAvailability: new Uint32Array(pieceCount),
    requests: new Map(),
    writers: new Map(),
    served: new Uint32Array(pieceCount),
    neverSent: pieceCount,
    uploadQueue: [],
    activeUploads: 0,
    arrivals: 0,
    lastConnected: now,
    peersWantedAt: -Infinity,
    lastAgentBlockAt: now,
  };
};

export const isComplete = (s: SwarmState): boolean => s.state === 'seeding';

export const isClosed = (s: SwarmState): boolean => s.state === 'closed' || s.state === 'failed';

/** Whether pieces are to be fetched: downloading, into a sink. */
export const isDownloading = (s: SwarmState): boolean =>
  s.state === 'downloading' && s.sink !== undefined;

export const missingPieces = (s: SwarmState): number => s.pieceCount - s.source.count;

// --- what peers have ---------------------------------------------------------------------------

/** Records that `peer` has piece `index`; false when it was known already. */
export const gain = (s: SwarmState, peer: Peer, index: number): boolean => {
  if (!peer.has.set(index)) return false;
  s.availability[index] = (s.availability[index] ?? 0) + 1;
  if (!peer.origin) s.agentAvailability[index] = (s.agentAvailability[index] ?? 0) + 1;
  return true;
};

// --- dropping peers ----------------------------------------------------------------------------

export const closePeer = (s: SwarmState, peer: Peer, reason: string, code?: number): void => {
  if (code === undefined) peer.conn.close(reason);
  else peer.conn.error(code, reason);
  dropPeer(s, peer);
};

/** Forgets a peer: its availability, requests (writers are aborted) and queued uploads. */
export const dropPeer = (s: SwarmState, peer: Peer): void => {
  if (s.byConn.get(peer.conn) !== peer) return;
  s.byConn.delete(peer.conn);
  if (s.peers.get(peer.id) === peer) s.peers.delete(peer.id);
  for (const index of peer.has.indices()) {
    s.availability[index] = (s.availability[index] ?? 1) - 1;
    if (!peer.origin) s.agentAvailability[index] = (s.agentAvailability[index] ?? 1) - 1;
  }
  for (const out of peer.outstanding.values()) forget(s, peer, out);
  peer.outstanding.clear();
  s.uploadQueue = s.uploadQueue.filter((u) => u.peer !== peer);
  if (s.peers.size === 0) s.lastConnected = s.now();
};

/** Ends our interest in one outstanding request (its writer, if any, is aborted). */
export const forget = (s: SwarmState, peer: Peer, out: Outstanding): void => {
  s.requests.get(out.index)?.delete(peer);
  const writer = out.writer;
  if (writer !== undefined) {
    writer.abort();
    endWriter(s, peer, out.index, writer);
  }
};

/** Ends a piece writer; its outcome comes back as a `pieceEnded` event. */
export const endWriter = (
  s: SwarmState,
  peer: Peer,
  index: number,
  writer: PieceWriterLike,
): void => {
  writer.end().then(
    (outcome) => s.post({ type: 'pieceEnded', conn: peer.conn, index, writer, outcome }),
    (error: Error) =>
      s.post({
        type: 'pieceEnded',
        conn: peer.conn,
        index,
        writer,
        outcome: { kind: 'io-error', error },
      }),
  );
};

/** Refuses and stops dialing a peer for `blacklistMs` (it sent a bad piece). */
export const ban = (s: SwarmState, id: string): void => {
  s.stats.blacklisted += 1;
  s.blacklist.set(id, s.now() + s.config.blacklistMs);
  s.candidates.delete(id);
};

// --- the end -----------------------------------------------------------------------------------

/** Closes every connection and settles `done` (rejected unless the blob was complete). */
export const shutdown = (
  s: SwarmState,
  reason: string,
  state: 'closed' | 'failed' = 'closed',
): void => {
  if (isClosed(s)) return;
  const wasComplete = isComplete(s);
  s.state = state;
  s.stopTicking();
  for (const peer of [...s.peers.values()]) {
    closePeer(s, peer, reason, wireErrorCodes.SHUTTING_DOWN);
  }
  for (const conn of s.pending.keys()) conn.error(wireErrorCodes.SHUTTING_DOWN, reason);
  s.pending.clear();
  s.uploadQueue = [];
  if (!wasComplete) s.rejectDone(new Error(`download of ${s.metainfo.digest}: ${reason}`));
  s.options.onClose?.(reason);
};

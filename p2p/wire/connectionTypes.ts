import type { Readable } from 'node:stream';
import type { Result } from '../../domain';
import type { RateLimiter } from '../bandwidth';
import type { Timers } from '../timers';
import type { Bitfield } from './bitfield';
import type { PeerConnection } from './connection';
import type { Violation, WireStats } from './violations';

// What a PeerConnection is given and what it reports: the swarm each side serves, the remote
// peer, requests and blocks, and why a connection closed.

/** What this side serves or fetches on a connection: one blob's swarm. */
export type LocalSwarm = {
  /** Lowercase hex info hash of the metainfo (64 characters). */
  readonly infoHash: string;
  /** The blob's length and piece length, from the metainfo. */
  readonly length: number;
  readonly pieceLength: number;
  /** Pieces this side has; a snapshot goes into the handshake. */
  readonly bitfield: Bitfield;
};

export type RemotePeer = {
  readonly peerId: Buffer;
  /** The protocol version of the session: the lower of both sides' highest. */
  readonly version: number;
  readonly origin: boolean;
  /** The peer's pieces: its handshake bitfield, kept current by `have` and `complete`. */
  readonly bitfield: Bitfield;
};

/** The acceptor's answer to a dialer's handshake: serve the swarm, or refuse with a code. */
export type SwarmRefusal = { readonly refuse: number; readonly message: string };
export type SwarmResolver = (remote: {
  readonly infoHash: string;
  readonly peerId: Buffer;
  readonly origin: boolean;
  readonly pieceCount: number;
}) => LocalSwarm | SwarmRefusal | undefined | Promise<LocalSwarm | SwarmRefusal | undefined>;

export type PieceRequest = {
  readonly index: number;
  readonly begin: number;
  readonly length: number;
};

/**
 * A requested range read on demand into buffers the connection provides (pooled frame
 * buffers, so the bytes go from the file straight into the frames it sends):
 * `readv(offset, targets)` fills `targets` in order with the range's bytes from `offset`
 * (relative to the range's start). False, or a rejection: the bytes cannot be read.
 */
export type RangeReader = {
  readonly readv: (offset: number, targets: readonly Buffer[]) => Promise<boolean>;
};

/** What a response's bytes come from. */
export type PieceData = Buffer | Readable | RangeReader;

/**
 * Received bytes of a request, in order: a block frame's payload or part of it, as the
 * socket delivered it. The chunks are views of the socket's read buffer, valid only until
 * the 'piece' listener returns: copy what you keep.
 */
export type PieceBlock = {
  readonly index: number;
  /** Offset of these bytes within the piece. */
  readonly begin: number;
  readonly length: number;
  readonly chunks: readonly Buffer[];
  /** The request this block answers. */
  readonly request: PieceRequest;
  /** Whether these bytes complete the request. */
  readonly done: boolean;
};

export type CloseKind =
  /** `close()` or `error()` on this side. */
  | 'local'
  /** The peer broke the protocol. */
  | 'violation'
  /** The peer sent a connection-scoped error frame. */
  | 'remote-error'
  /** The peer closed the stream. */
  | 'ended'
  | 'socket-error'
  | 'handshake-timeout'
  /** Nothing received for `idleTimeoutMs` (keepalives count). */
  | 'idle-timeout'
  /** A write has not drained for `idleTimeoutMs`: the peer stopped reading. */
  | 'write-stalled';

export type CloseReason = {
  readonly kind: CloseKind;
  readonly message: string;
  readonly violation?: Violation;
  /** The wire error code sent (local) or received (remote-error). */
  readonly code?: number;
};

export type PeerConnectionEvents = {
  have: [index: number];
  complete: [];
  /** The peer asks for a range: answer with `sendPiece` or `reject`. */
  request: [request: PieceRequest];
  /** The peer cancelled a request of its own; the connection has answered it. */
  cancel: [request: PieceRequest];
  piece: [block: PieceBlock];
  /** The peer answered one of our requests with an error (not after our own cancel). */
  rejected: [request: PieceRequest, code: number, message: string];
  close: [reason: CloseReason];
};

export type PeerConnectionOptions = {
  /** This side's peer id, 20–32 bytes. */
  readonly peerId: Buffer;
  /** This side is an origin (flag in the handshake). */
  readonly origin?: boolean;
  readonly handshakeTimeoutMs?: number;
  readonly keepaliveIntervalMs?: number;
  readonly idleTimeoutMs?: number;
  /** Longest a `have` waits for another frame to ride with; 0: at once. Default 100 ms. */
  readonly haveDelayMs?: number;
  /** Payload bytes per piece frame this side sends, ≤ 256 KiB. Default 256 KiB. */
  readonly blockLength?: number;
  /** Host-wide limiters (see `p2p/bandwidth`); every byte read and every piece frame sent. */
  readonly ingress?: RateLimiter;
  readonly egress?: RateLimiter;
  /** Shared counters of violations and closes. */
  readonly stats?: WireStats;
  /** Called when the peer breaks the protocol, just before the connection closes. */
  readonly onViolation?: (violation: Violation, connection: PeerConnection) => void;
  /** Milliseconds, monotonic; default `timers.now`. */
  readonly now?: () => number;
  /** The handshake timeout, keepalives, idle checks and the close grace; default the system's. */
  readonly timers?: Timers;
};

/** How a handshake ended: the remote peer, or why the connection closed. */
export type HandshakeResult = Result<RemotePeer, CloseReason>;

/**
 * The verbs and events of one peer connection, as a scheduler uses them. `PeerConnection`
 * implements it over a stream and Shoal's wire protocol; a simulator implements it over a
 * simulated network (message objects, sizes only), so the scheduler runs unchanged on both.
 * `PeerConnection` documents each verb's contract.
 */
export interface WireConnection {
  /** The peer, once the handshakes are done. */
  readonly remote: RemotePeer | undefined;
  readonly isOpen: boolean;
  /** The peer's requests not yet answered. */
  readonly servingRequests: number;
  on<E extends keyof PeerConnectionEvents>(
    event: E,
    listener: (...args: PeerConnectionEvents[E]) => void,
  ): unknown;
  /** Dials into a swarm: sends our handshake and waits for the acceptor's. */
  handshake(swarm: LocalSwarm, options?: { expectedPeerId?: Buffer }): Promise<HandshakeResult>;
  sendHave(index: number): boolean;
  /** Tells the peer we now hold every piece (one frame instead of the last `have`s). */
  sendComplete(): boolean;
  request(index: number, begin?: number, length?: number): boolean;
  cancel(index: number): boolean;
  sendPiece(index: number, begin: number, data: PieceData): Promise<boolean>;
  reject(index: number, code?: number, message?: string): boolean;
  /** Sends a connection-scoped error and closes. */
  error(code: number, message: string): void;
  close(message?: string): void;
  pauseReading(): void;
  resumeReading(): void;
}

/**
 * Opens a connection to a peer's `host:port`, its handshake not started: the scheduler's
 * port to the network (TCP and the wire protocol for a real host, a simulated link for the
 * simulator). Rejects when the peer cannot be reached.
 */
export type Connector = (address: string) => Promise<WireConnection>;

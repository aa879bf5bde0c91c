import type { FinalizeOutcome, PieceOutcome } from '../pieces';
import type {
  Bitfield,
  CloseReason,
  LocalSwarm,
  PieceBlock,
  PieceRequest,
  SwarmRefusal,
  WireConnection,
} from '../wire';
import type { PieceWriterLike } from './pieceSource';

/** A peer the tracker handed out (or a test named): where to dial it and what it is. */
export type PeerCandidate = {
  /** Lowercase hex peer id. */
  readonly peerId: string;
  /** `host:port` of its peer port (`[v6]:port` for IPv6). */
  readonly address: string;
  readonly origin: boolean;
  readonly complete: boolean;
};

/**
 * Everything that changes a blob's swarm state is one of these, applied one at a time by the
 * scheduler's loop (Kraken's `lib/torrent/scheduler/events.go`). Callbacks from connections,
 * the piece store and timers only post events; the handlers are synchronous and the only
 * code that touches the state.
 */
export type SchedulerEvent =
  /** The tracker (or a test) named peers. */
  | { readonly type: 'peers'; readonly peers: readonly PeerCandidate[] }
  /** A dialer's handshake finished. */
  | {
      readonly type: 'dialed';
      readonly candidate: PeerCandidate;
      readonly conn: WireConnection;
      readonly snapshot: Bitfield;
    }
  | { readonly type: 'dialFailed'; readonly candidate: PeerCandidate; readonly reason: string }
  /** An incoming peer's handshake arrived: admit it (answer now) or refuse. */
  | {
      readonly type: 'admit';
      readonly conn: WireConnection;
      readonly peerId: Buffer;
      readonly origin: boolean;
      readonly reply: (answer: LocalSwarm | SwarmRefusal) => void;
    }
  /** An admitted peer's handshake completed, or failed. */
  | { readonly type: 'accepted'; readonly conn: WireConnection }
  | { readonly type: 'acceptFailed'; readonly conn: WireConnection }
  | { readonly type: 'closed'; readonly conn: WireConnection; readonly reason: CloseReason }
  | { readonly type: 'have'; readonly conn: WireConnection; readonly index: number }
  | { readonly type: 'peerComplete'; readonly conn: WireConnection }
  | { readonly type: 'block'; readonly conn: WireConnection; readonly block: PieceBlock }
  /** A piece writer that asked us to wait has room again. */
  | { readonly type: 'drained'; readonly conn: WireConnection }
  /** A piece finished writing: stored (verified), bad, or aborted. */
  | {
      readonly type: 'pieceEnded';
      readonly conn: WireConnection;
      readonly index: number;
      readonly writer: PieceWriterLike;
      readonly outcome: PieceOutcome;
    }
  | {
      readonly type: 'rejected';
      readonly conn: WireConnection;
      readonly request: PieceRequest;
      readonly code: number;
    }
  | { readonly type: 'request'; readonly conn: WireConnection; readonly request: PieceRequest }
  | { readonly type: 'cancel'; readonly conn: WireConnection; readonly request: PieceRequest }
  | {
      readonly type: 'uploaded';
      readonly conn: WireConnection;
      readonly index: number;
      readonly ok: boolean;
      readonly bytes: number;
    }
  | { readonly type: 'finalized'; readonly outcome: FinalizeOutcome | { kind: 'error' } }
  | { readonly type: 'tick' }
  | { readonly type: 'close'; readonly reason: string };

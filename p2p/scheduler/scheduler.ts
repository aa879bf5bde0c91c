import type { Metainfo } from '../metainfo';
import { systemTimers } from '../timers';
import type { LocalSwarm, SwarmRefusal, WireConnection } from '../wire';
import { wireErrorCodes } from '../wire';
import {
  addCandidates,
  admitIncoming,
  closeIfIdle,
  maybeDial,
  onClosed,
  onDialFailed,
  peerOf,
  promote,
} from './admission';
import type { SchedulerConfig } from './config';
import {
  expireRequests,
  finalize,
  onBlock,
  onDrained,
  onFinalized,
  onHave,
  onPeerComplete,
  onPieceEnded,
  onRejected,
  requestAll,
} from './download';
import type { PeerCandidate, SchedulerEvent } from './events';
import type { SchedulerOptions, SchedulerState, SchedulerStats, SwarmState } from './swarmState';
import { createSwarmState, isClosed, isComplete, shutdown } from './swarmState';
import { onCancel, onRequest, onUploaded } from './upload';

export type {
  SchedulerLogger,
  SchedulerOptions,
  SchedulerState,
  SchedulerStats,
  StoredPiece,
} from './swarmState';

/**
 * One blob's swarm on this host: its connections, piece choice, request pipelines, timeouts,
 * endgame, blacklist and uploads. Every input is a {@link SchedulerEvent} applied by one
 * serialized loop (`post`); handlers are synchronous, and asynchronous work (dials, piece
 * writes, uploads, finalize) reports back by posting events. Nothing else writes the state.
 *
 * The handlers live by concern — `admission.ts` (who is connected), `download.ts` (getting
 * the blob), `upload.ts` (serving it) — over one {@link SwarmState}; this file is the loop:
 * it resolves each event's peer, dispatches, and runs the tick. Time and the tick come from
 * `options.timers`, so a simulator can drive the loop with simulated time.
 */
export class BlobScheduler {
  readonly metainfo: Metainfo;
  readonly infoHash: string;
  readonly pieceCount: number;
  readonly config: SchedulerConfig;
  readonly stats: SchedulerStats;
  /** Resolves with the complete blob once its whole digest verified; rejects on failure. */
  readonly done: Promise<void>;
  private readonly swarm: SwarmState;
  private readonly queue: SchedulerEvent[] = [];
  private draining = false;

  constructor(options: SchedulerOptions) {
    const timers = options.timers ?? systemTimers;
    let resolveDone!: () => void;
    let rejectDone!: (error: Error) => void;
    this.done = new Promise<void>((resolve, reject) => {
      resolveDone = resolve;
      rejectDone = reject;
    });
    // A caller that only seeds never awaits `done`.
    this.done.catch(() => undefined);
    const s = createSwarmState(options, {
      now: options.now ?? (() => timers.now()),
      post: (event) => this.post(event),
      resolveDone,
      rejectDone,
    });
    this.swarm = s;
    this.metainfo = s.metainfo;
    this.infoHash = s.infoHash;
    this.pieceCount = s.pieceCount;
    this.config = s.config;
    this.stats = s.stats;
    if (s.state === 'seeding') {
      s.stats.completedAt = s.stats.startedAt;
      s.resolveDone();
    }
    s.stopTicking = timers.every(s.config.tickMs, () => this.post({ type: 'tick' }));
    // A resumed download may already hold every piece.
    if (s.sink?.allPresent) finalize(s);
  }

  get state(): SchedulerState {
    return this.swarm.state;
  }

  get complete(): boolean {
    return isComplete(this.swarm);
  }

  get closed(): boolean {
    return isClosed(this.swarm);
  }

  /** Open connections. */
  get connectionCount(): number {
    return this.swarm.peers.size;
  }

  /** Pieces present. */
  get have(): number {
    return this.swarm.source.count;
  }

  /** Whether it still wants peers (for the announce loop: downloading with free slots). */
  get wantsPeers(): boolean {
    const s = this.swarm;
    return s.state === 'downloading' && s.peers.size < s.config.maxConnections;
  }

  /** A view of the connections, for tests, metrics and logs. */
  connections(): Array<{ peerId: string; direction: 'in' | 'out'; origin: boolean; has: number }> {
    return [...this.swarm.peers.values()].map((p) => ({
      peerId: p.id,
      direction: p.direction,
      origin: p.origin,
      has: p.has.count,
    }));
  }

  /** Peers the tracker handed out: dialed while slots are free. */
  addPeers(peers: readonly PeerCandidate[]): void {
    this.post({ type: 'peers', peers });
  }

  /**
   * An incoming peer's handshake (the host resolved our info hash): answers with our swarm,
   * or a refusal. Follow with {@link accepted} or {@link acceptFailed} once the connection's
   * `accept` settles.
   */
  admit(conn: WireConnection, remote: { peerId: Buffer; origin: boolean }) {
    return new Promise<LocalSwarm | SwarmRefusal>((reply) =>
      this.post({ type: 'admit', conn, peerId: remote.peerId, origin: remote.origin, reply }),
    );
  }

  accepted(conn: WireConnection): void {
    this.post({ type: 'accepted', conn });
  }

  acceptFailed(conn: WireConnection): void {
    this.post({ type: 'acceptFailed', conn });
  }

  close(reason = 'closed'): void {
    this.post({ type: 'close', reason });
  }

  /**
   * Queues an event and, unless the loop is running already, runs it to empty. A block's
   * bytes are the socket's read buffer, valid only while its event is delivered: one that
   * must wait in the queue (posted from inside the loop) is copied first.
   */
  post(event: SchedulerEvent): void {
    if (this.draining) {
      this.queue.push(event.type === 'block' ? detachBlock(event) : event);
      return;
    }
    this.queue.push(event);
    this.draining = true;
    try {
      for (let next = this.queue.shift(); next !== undefined; next = this.queue.shift()) {
        try {
          this.apply(next);
        } catch (error) {
          this.swarm.log.warn({ err: error, event: next.type }, 'scheduler event failed');
        }
      }
    } finally {
      this.draining = false;
    }
  }

  // --- the loop ------------------------------------------------------------------------------

  private apply(event: SchedulerEvent): void {
    const s = this.swarm;
    if (isClosed(s)) {
      applyClosed(event);
      return;
    }
    switch (event.type) {
      case 'peers':
        addCandidates(s, event.peers);
        return;
      case 'dialed':
        s.dialing.delete(event.candidate.peerId);
        promote(s, event.conn);
        return;
      case 'dialFailed':
        onDialFailed(s, event.candidate, event.reason);
        return;
      case 'admit':
        event.reply(admitIncoming(s, event.conn, event.peerId.toString('hex'), event.origin));
        return;
      case 'accepted':
        promote(s, event.conn);
        return;
      case 'acceptFailed':
        s.pending.delete(event.conn);
        return;
      case 'closed':
        onClosed(s, event.conn, event.reason.message);
        return;
      case 'have': {
        const peer = peerOf(s, event.conn);
        if (peer !== undefined) onHave(s, peer, event.index);
        return;
      }
      case 'peerComplete': {
        const peer = peerOf(s, event.conn);
        if (peer !== undefined) onPeerComplete(s, peer);
        return;
      }
      case 'block': {
        const peer = peerOf(s, event.conn);
        if (peer !== undefined) onBlock(s, peer, event.block);
        return;
      }
      case 'drained': {
        const peer = peerOf(s, event.conn);
        if (peer !== undefined) onDrained(peer);
        return;
      }
      case 'pieceEnded':
        onPieceEnded(s, event);
        return;
      case 'rejected': {
        const peer = peerOf(s, event.conn);
        if (peer !== undefined) onRejected(s, peer, event.request.index, event.code);
        return;
      }
      case 'request':
        onRequest(s, event.conn, peerOf(s, event.conn), event.request);
        return;
      case 'cancel': {
        const peer = peerOf(s, event.conn);
        if (peer !== undefined) onCancel(s, peer, event.request);
        return;
      }
      case 'uploaded':
        onUploaded(s, event.conn, event.ok, event.bytes);
        return;
      case 'finalized':
        onFinalized(s, event.outcome);
        return;
      case 'tick':
        this.onTick();
        return;
      case 'close':
        shutdown(s, event.reason);
        return;
    }
  }

  private onTick(): void {
    const s = this.swarm;
    const now = s.now();
    for (const peer of [...s.peers.values()]) {
      expireRequests(s, peer, now);
      closeIfIdle(s, peer, now);
    }
    if (isComplete(s)) {
      const { seedTimeMs, seedIdleMs } = s.config;
      const since = now - (s.stats.completedAt ?? now);
      if (seedTimeMs > 0 && since > seedTimeMs && s.activeUploads === 0) {
        shutdown(s, 'seeding time over');
        return;
      }
      const empty = s.peers.size === 0 && s.pending.size === 0;
      if (seedIdleMs > 0 && empty && now - s.lastConnected > seedIdleMs) {
        shutdown(s, 'no peers');
        return;
      }
    }
    maybeDial(s);
    requestAll(s);
  }
}

const detachBlock = (event: Extract<SchedulerEvent, { type: 'block' }>): SchedulerEvent => ({
  ...event,
  block: { ...event.block, chunks: [Buffer.concat(event.block.chunks)] },
});

/** After closing, only cleanups matter: late connections are closed, writers settle. */
const applyClosed = (event: SchedulerEvent): void => {
  switch (event.type) {
    case 'admit':
      event.reply({ refuse: wireErrorCodes.SHUTTING_DOWN, message: 'swarm closed' });
      return;
    case 'dialed':
      event.conn.error(wireErrorCodes.SHUTTING_DOWN, 'swarm closed');
      return;
    case 'accepted':
      event.conn.error(wireErrorCodes.SHUTTING_DOWN, 'swarm closed');
      return;
    case 'request':
      event.conn.reject(event.request.index, wireErrorCodes.UNAVAILABLE, 'swarm closed');
      return;
    default:
      return;
  }
};

import type { Duplex, Readable } from 'node:stream';
import type { Metainfo } from '../metainfo';
import { infoHash as infoHashOf } from '../metainfo';
import type { LocalSwarm, PeerConnectionOptions, SwarmRefusal } from '../wire';
import { Bitfield, PeerConnection, wireErrorCodes } from '../wire';
import type { SchedulerConfig } from './config';
import { schedulerConfigOf } from './config';
import type { PeerCandidate, SchedulerEvent } from './events';
import { pickRarest, requestTimeoutOf, slotPolicy } from './pieceSelection';
import type { PieceSink, PieceSource, PieceWriterLike } from './pieceSource';
import { isPieceSink } from './pieceSource';

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
  /** Opens a stream to `host:port`; without it this peer never dials. */
  readonly dial?: (address: string) => Promise<Duplex>;
  readonly logger?: SchedulerLogger;
  /** Milliseconds, monotonic. */
  readonly now?: () => number;
  readonly random?: () => number;
  /** Called (inside the loop) when the blob completes and when the scheduler closes. */
  readonly onComplete?: () => void;
  readonly onClose?: (reason: string) => void;
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

type Outstanding = {
  readonly index: number;
  readonly deadline: number;
  writer: PieceWriterLike | undefined;
  /** Received bytes not yet given to the writer (coalesced into larger writes). */
  held: Buffer[];
  heldBytes: number;
};

/**
 * Blocks are handed to the piece writer in runs of at least this many bytes: each write is a
 * hand-off to the file system's thread pool, and one per socket chunk costs more CPU than the
 * bytes (a context switch each, under load). Bounded: pipeline × this per connection.
 */
const writeCoalesceBytes = 256 * 1024;

type Peer = {
  readonly id: string;
  readonly conn: PeerConnection;
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

type Pending = {
  readonly direction: 'in' | 'out';
  readonly id: string;
  readonly origin: boolean;
  readonly snapshot: Bitfield;
};

type QueuedUpload = {
  readonly peer: Peer;
  readonly index: number;
  readonly begin: number;
  readonly length: number;
  readonly arrival: number;
};

/**
 * One blob's swarm on this host: its connections, piece choice, request pipelines, timeouts,
 * endgame, blacklist and uploads. Every input is a {@link SchedulerEvent} applied by one
 * serialized loop (`post`); handlers are synchronous, and asynchronous work (dials, piece
 * writes, uploads, finalize) reports back by posting events. Nothing else writes the state.
 */
export class BlobScheduler {
  readonly metainfo: Metainfo;
  readonly infoHash: string;
  readonly pieceCount: number;
  readonly config: SchedulerConfig;
  readonly stats: SchedulerStats;
  /** Resolves with the complete blob once its whole digest verified; rejects on failure. */
  readonly done: Promise<void>;
  private readonly source: PieceSource;
  private readonly sink: PieceSink | undefined;
  private readonly options: SchedulerOptions;
  private readonly selfId: string;
  private readonly isOrigin: boolean;
  private readonly now: () => number;
  private readonly random: () => number;
  private readonly log: SchedulerLogger;
  private state_: SchedulerState;
  private readonly queue: SchedulerEvent[] = [];
  private draining = false;
  private readonly peers = new Map<string, Peer>();
  private readonly byConn = new Map<PeerConnection, Peer>();
  private readonly pending = new Map<PeerConnection, Pending>();
  /** Peer ids being dialed (before a connection object exists). */
  private readonly dialing = new Set<string>();
  private readonly candidates = new Map<string, PeerCandidate>();
  private readonly blacklist = new Map<string, number>();
  private readonly dialBackoff = new Map<string, number>();
  /** Connected peers holding each piece, all of them and agents only. */
  private readonly availability: Uint32Array;
  private readonly agentAvailability: Uint32Array;
  /** Peers each missing piece is requested from. */
  private readonly requests = new Map<number, Set<Peer>>();
  private readonly writers = new Map<number, { peer: Peer; writer: PieceWriterLike }>();
  /** How often each piece was sent (uploads go least-sent first). */
  private readonly served: Uint32Array;
  /** Pieces not sent to anyone yet. */
  private neverSent: number;
  private uploadQueue: QueuedUpload[] = [];
  private activeUploads = 0;
  private arrivals = 0;
  private lastConnected: number;
  /** When an agent last sent us a block (see `starving`). */
  private lastAgentBlockAt: number;
  private timer: NodeJS.Timeout | undefined;
  private resolveDone!: () => void;
  private rejectDone!: (error: Error) => void;

  constructor(options: SchedulerOptions) {
    this.options = options;
    this.metainfo = options.metainfo;
    this.infoHash = infoHashOf(options.metainfo);
    this.source = options.store;
    this.sink = isPieceSink(options.store) && !options.store.complete ? options.store : undefined;
    this.pieceCount = options.store.pieceCount;
    this.config = schedulerConfigOf(options.config);
    this.selfId = options.peerId.toString('hex');
    this.isOrigin = options.origin === true;
    this.now = options.now ?? (() => performance.now());
    this.random = options.random ?? Math.random;
    this.log = options.logger ?? quiet;
    this.availability = new Uint32Array(this.pieceCount);
    this.agentAvailability = new Uint32Array(this.pieceCount);
    this.served = new Uint32Array(this.pieceCount);
    this.neverSent = this.pieceCount;
    const now = this.now();
    this.lastConnected = now;
    this.lastAgentBlockAt = now;
    this.stats = {
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
    };
    this.done = new Promise<void>((resolve, reject) => {
      this.resolveDone = resolve;
      this.rejectDone = reject;
    });
    // A caller that only seeds never awaits `done`.
    this.done.catch(() => undefined);
    this.state_ = this.sink === undefined ? 'seeding' : 'downloading';
    if (this.state_ === 'seeding') {
      this.stats.completedAt = now;
      this.resolveDone();
    }
    this.timer = setInterval(() => this.post({ type: 'tick' }), this.config.tickMs);
    this.timer.unref();
    // A resumed download may already hold every piece.
    if (this.sink?.allPresent) this.finalize();
  }

  get state(): SchedulerState {
    return this.state_;
  }

  get complete(): boolean {
    return this.state_ === 'seeding';
  }

  get closed(): boolean {
    return this.state_ === 'closed' || this.state_ === 'failed';
  }

  /** Open connections. */
  get connectionCount(): number {
    return this.peers.size;
  }

  /** Pieces present. */
  get have(): number {
    return this.source.count;
  }

  /** Whether it still wants peers (for the announce loop: downloading with free slots). */
  get wantsPeers(): boolean {
    return this.state_ === 'downloading' && this.peers.size < this.config.maxConnections;
  }

  /** A view of the connections, for tests, metrics and logs. */
  connections(): Array<{ peerId: string; direction: 'in' | 'out'; origin: boolean; has: number }> {
    return [...this.peers.values()].map((p) => ({
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
  admit(conn: PeerConnection, remote: { peerId: Buffer; origin: boolean }) {
    return new Promise<LocalSwarm | SwarmRefusal>((reply) =>
      this.post({ type: 'admit', conn, peerId: remote.peerId, origin: remote.origin, reply }),
    );
  }

  accepted(conn: PeerConnection): void {
    this.post({ type: 'accepted', conn });
  }

  acceptFailed(conn: PeerConnection): void {
    this.post({ type: 'acceptFailed', conn });
  }

  close(reason = 'closed'): void {
    this.post({ type: 'close', reason });
  }

  /** Queues an event and, unless the loop is running already, runs it to empty. */
  post(event: SchedulerEvent): void {
    this.queue.push(event);
    if (this.draining) return;
    this.draining = true;
    try {
      for (let next = this.queue.shift(); next !== undefined; next = this.queue.shift()) {
        try {
          this.apply(next);
        } catch (error) {
          this.log.warn({ err: error, event: next.type }, 'scheduler event failed');
        }
      }
    } finally {
      this.draining = false;
    }
  }

  // --- the loop ------------------------------------------------------------------------------

  private apply(event: SchedulerEvent): void {
    if (this.closed) {
      this.applyClosed(event);
      return;
    }
    switch (event.type) {
      case 'peers':
        for (const peer of event.peers) {
          if (peer.peerId !== this.selfId) this.candidates.set(peer.peerId, peer);
        }
        this.maybeDial();
        return;
      case 'dialed':
        this.dialing.delete(event.candidate.peerId);
        this.promote(event.conn);
        return;
      case 'dialFailed':
        this.dialing.delete(event.candidate.peerId);
        this.dialBackoff.set(event.candidate.address, this.now() + this.config.dialBackoffMs);
        this.log.debug({ peer: event.candidate, reason: event.reason }, 'dial failed');
        return;
      case 'admit':
        event.reply(this.admitIncoming(event.conn, event.peerId.toString('hex'), event.origin));
        return;
      case 'accepted':
        this.promote(event.conn);
        return;
      case 'acceptFailed':
        this.pending.delete(event.conn);
        return;
      case 'closed':
        this.onClosed(event.conn, event.reason.message);
        return;
      case 'have':
        this.onHave(event.conn, event.index);
        return;
      case 'peerComplete':
        this.onPeerComplete(event.conn);
        return;
      case 'block':
        this.onBlock(event);
        return;
      case 'drained': {
        const peer = this.peerOf(event.conn);
        if (peer?.paused) {
          peer.paused = false;
          peer.conn.resumeReading();
        }
        return;
      }
      case 'pieceEnded':
        this.onPieceEnded(event);
        return;
      case 'rejected':
        this.onRejected(event.conn, event.request.index, event.code);
        return;
      case 'request':
        this.onRequest(event.conn, event.request);
        return;
      case 'cancel': {
        const peer = this.peerOf(event.conn);
        if (peer === undefined) return;
        this.uploadQueue = this.uploadQueue.filter(
          (u) => !(u.peer === peer && u.index === event.request.index),
        );
        return;
      }
      case 'uploaded':
        this.onUploaded(event.conn, event.ok, event.bytes);
        return;
      case 'finalized':
        this.onFinalized(event.outcome);
        return;
      case 'tick':
        this.onTick();
        return;
      case 'close':
        this.shutdown(event.reason);
        return;
    }
  }

  /** After closing, only cleanups matter: late connections are closed, writers settle. */
  private applyClosed(event: SchedulerEvent): void {
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
  }

  // --- connections ---------------------------------------------------------------------------

  private slots() {
    let inbound = 0;
    let outbound = 0;
    for (const peer of this.peers.values()) {
      if (peer.direction === 'in') inbound += 1;
      else outbound += 1;
    }
    for (const pending of this.pending.values()) {
      if (pending.direction === 'in') inbound += 1;
      else outbound += 1;
    }
    outbound += this.dialing.size;
    return {
      max: this.config.maxConnections,
      reservedOutbound: this.config.reservedOutbound,
      reservedInbound: this.config.reservedInbound,
      inbound,
      outbound,
      dialing: this.canEverDial(),
    };
  }

  private canEverDial(): boolean {
    return this.state_ === 'downloading' && this.options.dial !== undefined;
  }

  private isBlacklisted(id: string): boolean {
    const until = this.blacklist.get(id);
    if (until === undefined) return false;
    if (until > this.now()) return true;
    this.blacklist.delete(id);
    return false;
  }

  private connectedOrPending(id: string): 'connected' | 'dialing' | 'accepting' | undefined {
    if (this.peers.has(id)) return 'connected';
    if (this.dialing.has(id)) return 'dialing';
    for (const pending of this.pending.values()) {
      if (pending.id === id) return pending.direction === 'out' ? 'dialing' : 'accepting';
    }
    return undefined;
  }

  private admitIncoming(conn: PeerConnection, id: string, origin: boolean) {
    const refuse = (refuse: number, message: string): SwarmRefusal => ({ refuse, message });
    if (id === this.selfId) return refuse(wireErrorCodes.DUPLICATE_CONNECTION, 'that is us');
    if (this.isBlacklisted(id)) return refuse(wireErrorCodes.OVERLOADED, 'blacklisted');
    const existing = this.connectedOrPending(id);
    // Both sides dialed each other: the dial of the smaller peer id wins, on both sides.
    if (existing === 'connected' || existing === 'accepting' || (existing && id > this.selfId)) {
      return refuse(wireErrorCodes.DUPLICATE_CONNECTION, 'already connected');
    }
    if (!slotPolicy.canAccept(this.slots())) {
      return refuse(wireErrorCodes.OVERLOADED, 'no free connection slot');
    }
    const snapshot = this.source.bitfield();
    this.pending.set(conn, { direction: 'in', id, origin, snapshot });
    this.listen(conn);
    return {
      infoHash: this.infoHash,
      length: this.metainfo.length,
      pieceLength: this.metainfo.pieceLength,
      bitfield: snapshot,
    };
  }

  private maybeDial(): void {
    if (!this.canEverDial()) return;
    const now = this.now();
    for (const candidate of this.candidates.values()) {
      if (!slotPolicy.canDial(this.slots())) return;
      if (this.connectedOrPending(candidate.peerId) !== undefined) continue;
      if (this.isBlacklisted(candidate.peerId)) continue;
      if ((this.dialBackoff.get(candidate.address) ?? 0) > now) continue;
      this.dial(candidate);
    }
  }

  private dial(candidate: PeerCandidate): void {
    const dial = this.options.dial as (address: string) => Promise<Duplex>;
    this.dialing.add(candidate.peerId);
    const failed = (reason: string) => this.post({ type: 'dialFailed', candidate, reason });
    dial(candidate.address).then(
      (socket) => {
        if (this.closed) {
          socket.destroy();
          failed('swarm closed');
          return;
        }
        const conn = this.newConnection(socket);
        const snapshot = this.source.bitfield();
        this.dialing.delete(candidate.peerId);
        this.pending.set(conn, {
          direction: 'out',
          id: candidate.peerId,
          origin: candidate.origin,
          snapshot,
        });
        this.listen(conn);
        conn
          .handshake(this.localSwarm(snapshot), {
            expectedPeerId: Buffer.from(candidate.peerId, 'hex'),
          })
          .then((result) => {
            if (result.ok) this.post({ type: 'dialed', candidate, conn, snapshot });
            else failed(result.error.message);
          });
      },
      (error: Error) => failed(error.message),
    );
  }

  private newConnection(socket: Duplex): PeerConnection {
    return new PeerConnection(socket, {
      ...this.options.connection,
      peerId: this.options.peerId,
      origin: this.isOrigin,
    });
  }

  private localSwarm(bitfield: Bitfield): LocalSwarm {
    return {
      infoHash: this.infoHash,
      length: this.metainfo.length,
      pieceLength: this.metainfo.pieceLength,
      bitfield,
    };
  }

  /** Every connection event becomes a loop event; listening starts before the handshake ends. */
  private listen(conn: PeerConnection): void {
    conn.on('have', (index) => this.post({ type: 'have', conn, index }));
    conn.on('complete', () => this.post({ type: 'peerComplete', conn }));
    conn.on('request', (request) => this.post({ type: 'request', conn, request }));
    conn.on('cancel', (request) => this.post({ type: 'cancel', conn, request }));
    conn.on('piece', (block) => this.post({ type: 'block', conn, block }));
    conn.on('rejected', (request, code) => this.post({ type: 'rejected', conn, request, code }));
    conn.on('close', (reason) => this.post({ type: 'closed', conn, reason }));
  }

  /**
   * The peer of an open connection. A connection whose handshake finished but whose
   * `dialed`/`accepted` event is still queued is promoted on its first event.
   */
  private peerOf(conn: PeerConnection): Peer | undefined {
    const peer = this.byConn.get(conn);
    if (peer !== undefined) return peer;
    if (this.pending.has(conn) && conn.isOpen) return this.promote(conn);
    return undefined;
  }

  private promote(conn: PeerConnection): Peer | undefined {
    const known = this.byConn.get(conn);
    if (known !== undefined) return known;
    const pending = this.pending.get(conn);
    const remote = conn.remote;
    if (pending === undefined || remote === undefined || !conn.isOpen) return undefined;
    this.pending.delete(conn);
    const id = remote.peerId.toString('hex');
    const existing = this.peers.get(id);
    if (existing !== undefined) {
      // Keep the connection dialed by the smaller peer id; both sides choose the same one.
      const dialerOf = (direction: 'in' | 'out') => (direction === 'out' ? this.selfId : id);
      const keepNew =
        dialerOf(pending.direction) !== dialerOf(existing.direction) &&
        dialerOf(pending.direction) < dialerOf(existing.direction);
      if (!keepNew) {
        conn.error(wireErrorCodes.DUPLICATE_CONNECTION, 'already connected');
        return undefined;
      }
      existing.conn.error(wireErrorCodes.DUPLICATE_CONNECTION, 'already connected');
      this.dropPeer(existing);
    }
    const now = this.now();
    const peer: Peer = {
      id,
      conn,
      direction: pending.direction,
      origin: remote.origin,
      has: new Bitfield(this.pieceCount),
      outstanding: new Map(),
      refusedUntil: new Map(),
      busyAnswers: new Map(),
      uploads: 0,
      lastTraffic: now,
      lastBlockAt: now,
      paused: false,
      busyUntil: 0,
    };
    this.peers.set(id, peer);
    this.byConn.set(conn, peer);
    this.stats.connectionsOpened += 1;
    this.lastConnected = now;
    for (const index of remote.bitfield.indices()) this.gain(peer, index);
    // Pieces stored between the handshake's snapshot and now.
    if (this.source.count > pending.snapshot.count) {
      for (let index = 0; index < this.pieceCount; index += 1) {
        if (this.source.has(index) && !pending.snapshot.has(index)) conn.sendHave(index);
      }
    }
    this.log.debug({ peer: id, direction: peer.direction, origin: peer.origin }, 'connected');
    if (this.complete && peer.has.complete) {
      this.closePeer(peer, 'both complete');
      return undefined;
    }
    this.requestMore(peer);
    return peer;
  }

  private onClosed(conn: PeerConnection, reason: string): void {
    const pending = this.pending.get(conn);
    if (pending !== undefined) {
      this.pending.delete(conn);
      return;
    }
    const peer = this.byConn.get(conn);
    if (peer === undefined) return;
    this.log.debug({ peer: peer.id, reason }, 'connection closed');
    this.dropPeer(peer);
    this.maybeDial();
    this.requestAll();
  }

  private closePeer(peer: Peer, reason: string, code?: number): void {
    if (code === undefined) peer.conn.close(reason);
    else peer.conn.error(code, reason);
    this.dropPeer(peer);
  }

  /** Forgets a peer: its availability, requests (writers are aborted) and queued uploads. */
  private dropPeer(peer: Peer): void {
    if (this.byConn.get(peer.conn) !== peer) return;
    this.byConn.delete(peer.conn);
    if (this.peers.get(peer.id) === peer) this.peers.delete(peer.id);
    for (const index of peer.has.indices()) {
      this.availability[index] = (this.availability[index] ?? 1) - 1;
      if (!peer.origin) this.agentAvailability[index] = (this.agentAvailability[index] ?? 1) - 1;
    }
    for (const out of peer.outstanding.values()) this.forget(peer, out);
    peer.outstanding.clear();
    this.uploadQueue = this.uploadQueue.filter((u) => u.peer !== peer);
    if (this.peers.size === 0) this.lastConnected = this.now();
  }

  /** Ends our interest in one outstanding request (its writer, if any, is aborted). */
  private forget(peer: Peer, out: Outstanding): void {
    this.requests.get(out.index)?.delete(peer);
    const writer = out.writer;
    if (writer !== undefined) {
      writer.abort();
      this.endWriter(peer, out.index, writer);
    }
  }

  private endWriter(peer: Peer, index: number, writer: PieceWriterLike): void {
    writer.end().then(
      (outcome) => this.post({ type: 'pieceEnded', conn: peer.conn, index, writer, outcome }),
      (error: Error) =>
        this.post({
          type: 'pieceEnded',
          conn: peer.conn,
          index,
          writer,
          outcome: { kind: 'io-error', error },
        }),
    );
  }

  // --- what peers have -----------------------------------------------------------------------

  private gain(peer: Peer, index: number): boolean {
    if (!peer.has.set(index)) return false;
    this.availability[index] = (this.availability[index] ?? 0) + 1;
    if (!peer.origin) this.agentAvailability[index] = (this.agentAvailability[index] ?? 0) + 1;
    return true;
  }

  private onHave(conn: PeerConnection, index: number): void {
    const peer = this.peerOf(conn);
    if (peer === undefined || !this.gain(peer, index)) return;
    if (this.complete && peer.has.complete && !peer.origin) {
      this.closePeer(peer, 'both complete');
      return;
    }
    if (this.sink !== undefined && !this.source.has(index)) this.requestMore(peer);
  }

  private onPeerComplete(conn: PeerConnection): void {
    const peer = this.peerOf(conn);
    if (peer === undefined) return;
    for (let index = 0; index < this.pieceCount; index += 1) this.gain(peer, index);
    if (this.complete) this.closePeer(peer, 'both complete');
    else this.requestMore(peer);
  }

  // --- downloading ---------------------------------------------------------------------------

  private get downloading(): boolean {
    return this.state_ === 'downloading' && this.sink !== undefined;
  }

  private missing(): number {
    return this.pieceCount - this.source.count;
  }

  /** Fills every pipeline: agents first, so origins see what agents could not give. */
  private requestAll(): void {
    if (!this.downloading) return;
    for (const peer of this.peers.values()) if (!peer.origin) this.requestMore(peer);
    for (const peer of this.peers.values()) if (peer.origin) this.requestMore(peer);
  }

  /** Fills a peer's request pipeline, rarest pieces first (for origins: rarest among agents). */
  private requestMore(peer: Peer): void {
    if (!this.downloading || !peer.conn.isOpen) return;
    const limit = peer.origin ? this.config.originPipeline : this.config.pipeline;
    const free = limit - peer.outstanding.size;
    if (free <= 0) return;
    const now = this.now();
    if (peer.busyUntil > now) return;
    const endgame = this.missing() <= this.config.endgameThreshold;
    const perPiece = endgame ? this.config.endgameDuplicates : 1;
    const source = this.source;
    const rank = peer.origin ? this.agentAvailability : this.availability;
    // Origins are the seeders of last resort: ask them only for pieces no connected agent
    // holds, unless the agents give us nothing at all (see `starving`).
    const lastResort = peer.origin && !this.starving();
    const picks = pickRarest({
      count: free,
      pieceCount: this.pieceCount,
      random: this.random,
      rank: (index) => rank[index] ?? 0,
      eligible: (index) =>
        (!lastResort || (this.agentAvailability[index] ?? 0) === 0) &&
        peer.has.has(index) &&
        !source.has(index) &&
        !this.writers.has(index) &&
        !peer.outstanding.has(index) &&
        (this.requests.get(index)?.size ?? 0) < perPiece &&
        (peer.refusedUntil.get(index) ?? 0) <= now,
    });
    for (const index of picks) {
      if (!peer.conn.request(index)) {
        // The connection still waits for the answer to a cancelled request for this piece.
        peer.refusedUntil.set(index, now + this.config.busyBackoffMs);
        continue;
      }
      const timeout = requestTimeoutOf(
        source.pieceSize(index),
        this.config.requestTimeoutMs,
        this.config.requestTimeoutPerMiBMs,
      );
      peer.outstanding.set(index, {
        index,
        deadline: now + timeout,
        writer: undefined,
        held: [],
        heldBytes: 0,
      });
      let requested = this.requests.get(index);
      if (requested === undefined) this.requests.set(index, (requested = new Set()));
      requested.add(peer);
    }
  }

  /**
   * Whether the agents give us nothing, so that origins may be asked for pieces agents hold:
   * no agent has a request of ours outstanding, and none sent us a block for `busyBackoffMs`.
   * An agent that answered BUSY is asked again after that long, so agents that are merely
   * busy keep origins out; agents that only refuse (or stall) do not hold the blob up. The
   * answer only matters while some agent holds a missing piece (otherwise origins are asked
   * for every missing piece anyway). O(peers): it runs on every request to an origin.
   */
  private starving(): boolean {
    for (const peer of this.peers.values()) {
      if (!peer.origin && peer.outstanding.size > 0) return false;
    }
    return this.now() - this.lastAgentBlockAt >= this.config.busyBackoffMs;
  }

  private onBlock(event: Extract<SchedulerEvent, { type: 'block' }>): void {
    const peer = this.peerOf(event.conn);
    const sink = this.sink;
    const { block } = event;
    if (peer === undefined || sink === undefined) return;
    const out = peer.outstanding.get(block.index);
    if (out === undefined) return;
    const now = this.now();
    this.stats.bytesReceived += block.length;
    this.stats.firstByteAt ??= now;
    peer.lastTraffic = now;
    peer.lastBlockAt = now;
    if (!peer.origin) this.lastAgentBlockAt = now;
    if (out.writer === undefined) {
      const owner = this.writers.get(block.index);
      const begun =
        owner === undefined && !sink.has(block.index) ? sink.beginPiece(block.index) : undefined;
      if (begun === undefined || !begun.ok) {
        // Another peer is already sending this piece (endgame), or it is here: cancel ours.
        this.stats.duplicateBytes += block.length;
        peer.conn.cancel(block.index);
        peer.outstanding.delete(block.index);
        this.requests.get(block.index)?.delete(peer);
        this.requestMore(peer);
        return;
      }
      out.writer = begun.value;
      this.writers.set(block.index, { peer, writer: begun.value });
    }
    const writer = out.writer;
    for (const chunk of block.chunks) {
      out.held.push(chunk);
      out.heldBytes += chunk.length;
    }
    let room = true;
    if (block.done || out.heldBytes >= writeCoalesceBytes) {
      const held = out.held;
      out.held = [];
      out.heldBytes = 0;
      if (held.length === 1) room = writer.write(held[0] as Buffer);
      else if (writer.writeAll !== undefined) room = writer.writeAll(held);
      else room = writer.write(Buffer.concat(held));
    }
    if (!room && !peer.paused) {
      // The disk is behind: stop reading this peer until the writer has room.
      peer.paused = true;
      peer.conn.pauseReading();
      void writer.drained().then(() => this.post({ type: 'drained', conn: peer.conn }));
    }
    if (block.done) {
      peer.outstanding.delete(block.index);
      this.requests.get(block.index)?.delete(peer);
      this.endWriter(peer, block.index, writer);
      this.requestMore(peer);
    }
  }

  private onPieceEnded(event: Extract<SchedulerEvent, { type: 'pieceEnded' }>): void {
    const { index, outcome, writer } = event;
    const entry = this.writers.get(index);
    if (entry?.writer === writer) this.writers.delete(index);
    const peer = entry?.writer === writer ? entry.peer : this.byConn.get(event.conn);
    switch (outcome.kind) {
      case 'stored': {
        const size = this.source.pieceSize(index);
        this.stats.piecesStored += 1;
        this.stats.bytesDownloaded += size;
        if (peer?.origin) this.stats.originBytes += size;
        // Duplicates still outstanding elsewhere (endgame) are no longer needed.
        for (const other of this.requests.get(index) ?? []) {
          other.conn.cancel(index);
          other.outstanding.delete(index);
        }
        this.requests.delete(index);
        for (const other of this.peers.values()) {
          if (other !== peer || other.origin) other.conn.sendHave(index);
        }
        if (this.sink?.allPresent) this.finalize();
        else if (this.missing() <= this.config.endgameThreshold) this.requestAll();
        return;
      }
      case 'bad-hash':
      case 'bad-length':
        this.stats.badPieces += 1;
        if (peer !== undefined) {
          this.log.warn(
            { peer: peer.id, piece: index, outcome: outcome.kind },
            'peer sent a bad piece: blacklisted',
          );
          this.ban(peer.id);
          if (this.byConn.get(peer.conn) === peer) {
            this.closePeer(peer, 'sent a bad piece', wireErrorCodes.PROTOCOL_VIOLATION);
          }
        }
        this.requestAll();
        return;
      case 'io-error':
        this.log.warn({ piece: index, err: outcome.error }, 'cannot write a piece');
        this.requestAll();
        return;
      case 'aborted':
        this.requestAll();
        return;
    }
  }

  private ban(id: string): void {
    this.stats.blacklisted += 1;
    this.blacklist.set(id, this.now() + this.config.blacklistMs);
    this.candidates.delete(id);
  }

  private onRejected(conn: PeerConnection, index: number, code: number): void {
    const peer = this.peerOf(conn);
    if (peer === undefined) return;
    this.stats.rejections += 1;
    const out = peer.outstanding.get(index);
    if (out !== undefined) {
      peer.outstanding.delete(index);
      this.forget(peer, out);
    }
    const now = this.now();
    peer.refusedUntil.set(index, now + this.config.busyBackoffMs);
    if (code === wireErrorCodes.BUSY) peer.busyUntil = now + this.config.busyPauseMs;
    this.log.debug({ peer: peer.id, piece: index, code }, 'request refused');
    this.requestMore(peer);
  }

  private finalize(): void {
    const sink = this.sink;
    if (sink === undefined || this.state_ !== 'downloading') return;
    this.state_ = 'verifying';
    sink.finalize().then(
      (outcome) => this.post({ type: 'finalized', outcome }),
      (error: Error) => {
        this.log.warn({ err: error }, 'cannot finalize the blob');
        this.post({ type: 'finalized', outcome: { kind: 'error' } });
      },
    );
  }

  private onFinalized(outcome: Extract<SchedulerEvent, { type: 'finalized' }>['outcome']): void {
    if (this.state_ !== 'verifying') return;
    switch (outcome.kind) {
      case 'complete': {
        this.state_ = 'seeding';
        this.stats.completedAt = this.now();
        this.log.info({ digest: this.metainfo.digest }, 'blob complete: seeding');
        for (const peer of [...this.peers.values()]) {
          if (peer.has.complete) this.closePeer(peer, 'both complete');
        }
        this.resolveDone();
        this.options.onComplete?.();
        return;
      }
      case 'corrupt':
        this.log.warn({ pieces: outcome.badPieces }, 'whole digest failed: pieces fetched again');
        this.state_ = 'downloading';
        this.requestAll();
        return;
      case 'incomplete':
        this.state_ = 'downloading';
        this.requestAll();
        return;
      case 'error':
        this.fail('cannot finalize the blob');
        return;
    }
  }

  // --- uploading -----------------------------------------------------------------------------

  private onRequest(
    conn: PeerConnection,
    request: { index: number; begin: number; length: number },
  ): void {
    const peer = this.peerOf(conn);
    if (peer === undefined) {
      conn.reject(request.index, wireErrorCodes.UNAVAILABLE, 'not connected');
      return;
    }
    if (!this.source.has(request.index)) {
      conn.reject(request.index, wireErrorCodes.UNAVAILABLE, 'piece not here');
      return;
    }
    if (
      this.activeUploads >= this.config.maxUploads &&
      this.uploadQueue.length >= this.config.maxQueuedUploads
    ) {
      // It would wait into its timeout here and be sent twice: let it ask someone else now.
      this.stats.busySent += 1;
      conn.reject(request.index, wireErrorCodes.BUSY, 'upload queue full');
      return;
    }
    this.uploadQueue.push({ peer, ...request, arrival: (this.arrivals += 1) });
    this.pumpUploads();
  }

  /**
   * Starts queued uploads while fewer than `maxUploads` are in flight. Agents serve first
   * come first served (no request starves); origins serve the pieces sent least often
   * first (never-sent pieces before repeats) and deflect repeats (`shouldDeflect`).
   */
  private pumpUploads(): void {
    while (this.activeUploads < this.config.maxUploads && this.uploadQueue.length > 0) {
      let best = 0;
      for (let i = 1; this.isOrigin && i < this.uploadQueue.length; i += 1) {
        const a = this.uploadQueue[i] as QueuedUpload;
        const b = this.uploadQueue[best] as QueuedUpload;
        const sa = this.served[a.index] ?? 0;
        const sb = this.served[b.index] ?? 0;
        if (sa < sb || (sa === sb && a.arrival < b.arrival)) best = i;
      }
      const upload = this.uploadQueue.splice(best, 1)[0] as QueuedUpload;
      const { peer, index } = upload;
      if (this.byConn.get(peer.conn) !== peer || !peer.conn.isOpen) continue;
      if (this.shouldDeflect(peer, index)) {
        peer.busyAnswers.set(index, (peer.busyAnswers.get(index) ?? 0) + 1);
        this.stats.busySent += 1;
        peer.conn.reject(index, wireErrorCodes.BUSY, 'other peers have this piece');
        continue;
      }
      const data = this.readPiece(upload);
      if (data === undefined) {
        peer.conn.reject(index, wireErrorCodes.UNAVAILABLE, 'piece not here');
        continue;
      }
      this.activeUploads += 1;
      if (this.served[index] === 0) this.neverSent -= 1;
      this.served[index] = (this.served[index] ?? 0) + 1;
      peer.uploads += 1;
      const conn = peer.conn;
      const unavailable = () => conn.reject(index, wireErrorCodes.UNAVAILABLE, 'cannot read');
      void data
        .then((bytes) => {
          if (bytes !== undefined) return conn.sendPiece(index, upload.begin, bytes);
          unavailable();
          return false;
        })
        .catch(() => {
          unavailable();
          return false;
        })
        .then((ok) => this.post({ type: 'uploaded', conn, index, ok, bytes: upload.length }));
    }
  }

  /**
   * An upload's bytes: pieces up to 1 MiB in one read into one buffer (the connection sends
   * it in blocks without copying), longer ones as a stream of 64 KiB reads.
   */
  private readPiece(upload: QueuedUpload): Promise<Buffer | Readable | undefined> | undefined {
    const { index, begin, length } = upload;
    if (!this.source.has(index)) return undefined;
    if (this.source.read !== undefined && length <= 1024 * 1024) {
      return this.source.read(index, begin, length);
    }
    const stream = this.source.createReadStream(index, begin, length);
    return stream === undefined ? undefined : Promise.resolve(stream);
  }

  /**
   * Origins serve pieces the swarm lacks before repeats: a request for a piece already sent
   * is answered BUSY — while some piece was never sent, or while `originBusyAvailability`
   * connected agents hold it — so the agent asks for another piece (or another peer). At most
   * `originBusyRepeats` times per agent and piece: asked again, the origin serves it (nobody
   * starves).
   */
  private shouldDeflect(peer: Peer, index: number): boolean {
    const threshold = this.config.originBusyAvailability;
    if (!this.isOrigin || threshold === 0 || (this.served[index] ?? 0) === 0) return false;
    if ((peer.busyAnswers.get(index) ?? 0) >= this.config.originBusyRepeats) return false;
    return this.neverSent > 0 || (this.agentAvailability[index] ?? 0) >= threshold;
  }

  private onUploaded(conn: PeerConnection, ok: boolean, bytes: number): void {
    this.activeUploads -= 1;
    const peer = this.byConn.get(conn);
    if (peer !== undefined) {
      peer.uploads -= 1;
      if (ok) peer.lastTraffic = this.now();
    }
    if (ok) this.stats.bytesUploaded += bytes;
    this.pumpUploads();
  }

  // --- time ----------------------------------------------------------------------------------

  private onTick(): void {
    const now = this.now();
    for (const peer of [...this.peers.values()]) {
      // A request times out when it is overdue and its peer has sent nothing for as long as
      // a request may take: a busy peer working through its queue is not a stalled one.
      const silence = now - peer.lastBlockAt;
      for (const out of [...peer.outstanding.values()]) {
        if (out.deadline > now || silence < this.config.requestTimeoutMs) continue;
        this.stats.timeouts += 1;
        peer.conn.cancel(out.index);
        peer.outstanding.delete(out.index);
        this.forget(peer, out);
        peer.refusedUntil.set(out.index, now + this.config.requestTimeoutMs);
      }
      const idle = this.config.idleConnectionMs;
      if (
        idle > 0 &&
        now - peer.lastTraffic > idle &&
        peer.outstanding.size === 0 &&
        peer.uploads === 0 &&
        peer.conn.servingRequests === 0
      ) {
        this.closePeer(peer, 'idle');
      }
    }
    if (this.complete) {
      const { seedTimeMs, seedIdleMs } = this.config;
      const since = now - (this.stats.completedAt ?? now);
      if (seedTimeMs > 0 && since > seedTimeMs && this.activeUploads === 0) {
        this.shutdown('seeding time over');
        return;
      }
      const empty = this.peers.size === 0 && this.pending.size === 0;
      if (seedIdleMs > 0 && empty && now - this.lastConnected > seedIdleMs) {
        this.shutdown('no peers');
        return;
      }
    }
    this.maybeDial();
    this.requestAll();
  }

  private fail(reason: string): void {
    this.shutdown(reason, 'failed');
  }

  private shutdown(reason: string, state: 'closed' | 'failed' = 'closed'): void {
    if (this.closed) return;
    const wasComplete = this.complete;
    this.state_ = state;
    clearInterval(this.timer);
    for (const peer of [...this.peers.values()]) {
      this.closePeer(peer, reason, wireErrorCodes.SHUTTING_DOWN);
    }
    for (const conn of this.pending.keys()) conn.error(wireErrorCodes.SHUTTING_DOWN, reason);
    this.pending.clear();
    this.uploadQueue = [];
    if (!wasComplete) this.rejectDone(new Error(`download of ${this.metainfo.digest}: ${reason}`));
    this.options.onClose?.(reason);
  }
}

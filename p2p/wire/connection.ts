import { EventEmitter } from 'node:events';
import type { Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import { fail, ok } from '../../domain';
import type { CancelTimer, Timers } from '../timers';
import { systemTimers } from '../timers';
import { Bitfield } from './bitfield';
import type { ErrorMessage, HandshakeMessage } from './codec';
import {
  connectionError,
  encodeComplete,
  encodeError,
  encodeHandshake,
  encodeKeepalive,
} from './codec';
import type {
  CloseReason,
  HandshakeResult,
  LocalSwarm,
  PeerConnectionEvents,
  PeerConnectionOptions,
  PieceData,
  RemotePeer,
  SwarmRefusal,
  SwarmResolver,
  WireConnection,
} from './connectionTypes';
import {
  defaultBlockLength,
  handshakeFlags,
  isRequestErrorCode,
  maxBlockLength,
  maxPieceCount,
  minProtocolVersion,
  protocolVersion,
  wireDefaults,
  wireErrorCodes,
  wireErrorNameOf,
} from './constants';
import { FrameWriter } from './frameWriter';
import type { ControlMessage, PieceFrame } from './framer';
import { Framer } from './framer';
import { RequestExchange } from './requestExchange';
import { readInto } from './socketReads';
import type { Violation } from './violations';
import { violation } from './violations';

/** The types of a connection's API live beside it; they are part of it. */
export type {
  CloseKind,
  CloseReason,
  Connector,
  HandshakeResult,
  LocalSwarm,
  PeerConnectionEvents,
  PeerConnectionOptions,
  PieceBlock,
  PieceData,
  PieceRequest,
  RangeReader,
  RemotePeer,
  SwarmRefusal,
  SwarmResolver,
  WireConnection,
} from './connectionTypes';

type Phase = 'new' | 'dialing' | 'accepting' | 'resolving' | 'open' | 'closed';

/** Tokens the ingress limiter must hold again before a paused connection reads on. */
const ingressResumeBytes = 256 * 1024;

/**
 * One peer connection over a stream (a `net.Socket`, or any Duplex in tests), speaking
 * Shoal's wire protocol for one swarm.
 *
 * - The dialer calls `handshake(swarm)`, the acceptor `accept(resolve)`; both resolve to the
 *   remote peer or the close reason. The dialer sends nothing more until the acceptor's
 *   handshake arrives; frames before the handshakes are done are violations.
 * - Every request gets one answer: the requested range as `piece` frames (blocks of
 *   `blockLength`) or a request-scoped error. `cancel` is answered with `CANCELLED`, at the
 *   next block boundary if the range is being sent.
 * - Back-pressure: piece frames are written one at a time, each after taking egress tokens,
 *   and the next waits for `drain` when `write()` returns false; responses are sent one after
 *   another, in the order `sendPiece` is called. Control frames (a few bytes each, bounded
 *   by the piece count and the request cap) are written at once. Reading pauses while the
 *   ingress limiter is in debt and while `pauseReading()` is in force.
 * - A peer that breaks the protocol is disconnected (with an error frame), counted in
 *   `stats` and reported to `onViolation`; nothing it sends can make this object throw.
 */
export class PeerConnection extends EventEmitter<PeerConnectionEvents> implements WireConnection {
  readonly socket: Duplex;
  private readonly options: PeerConnectionOptions;
  private readonly now: () => number;
  private readonly timers: Timers;
  private readonly framer: Framer;
  private readonly writer: FrameWriter;
  private readonly exchange: RequestExchange;
  private readonly abort = new AbortController();
  private phase: Phase = 'new';
  private local: (LocalSwarm & { pieceCount: number }) | undefined;
  private remote_: RemotePeer | undefined;
  private expectedPeerId: Buffer | undefined;
  private resolver: SwarmResolver | undefined;
  private settle: ((result: HandshakeResult) => void) | undefined;
  private cancelHandshakeTimer: CancelTimer | undefined;
  private stopTicker: CancelTimer | undefined;
  private lastReceived: number;
  private readonly pauses = new Set<'limiter' | 'user'>();
  private cancelIngressTimer: CancelTimer | undefined;
  private closeReason_: CloseReason | undefined;

  constructor(socket: Duplex, options: PeerConnectionOptions) {
    super();
    const blockLength = options.blockLength ?? defaultBlockLength;
    if (!Number.isInteger(blockLength) || blockLength < 1 || blockLength > maxBlockLength) {
      throw new RangeError(`blockLength must be 1..${maxBlockLength}`);
    }
    this.socket = socket;
    this.options = options;
    const timers = options.timers ?? systemTimers;
    this.timers = timers;
    this.now = options.now ?? (() => timers.now());
    this.lastReceived = this.now();
    this.writer = new FrameWriter({
      socket,
      now: this.now,
      blockLength,
      egress: options.egress,
      signal: this.abort.signal,
      closed: () => this.closed,
      timers,
      haveDelayMs: options.haveDelayMs ?? wireDefaults.haveDelayMs,
    });
    this.exchange = new RequestExchange(
      {
        isOpen: () => this.isOpen,
        closed: () => this.closed,
        inRange: (index) => this.inRange(index),
        checkIndex: (index, what) => this.checkIndex(index, what),
        pieceSize: (index) => this.pieceSize(index),
        violate: (reason) => this.violate(reason),
        request: (request) => this.emit('request', request),
        cancel: (request) => this.emit('cancel', request),
        piece: (block) => this.emit('piece', block),
        rejected: (request, code, message) => this.emit('rejected', request, code, message),
      },
      this.writer,
    );
    this.framer = new Framer({
      message: (message) => this.onMessage(message),
      piece: (frame) => this.onPiece(frame),
      violation: (reason) => this.violate(reason),
    });
    (socket as Partial<Socket>).setNoDelay?.(true);
    socket.on('error', (error: Error) =>
      this.shutdown({ kind: 'socket-error', message: error.message }),
    );
    socket.on('end', () => this.shutdown({ kind: 'ended', message: 'peer closed the stream' }));
    socket.on('close', () => this.shutdown({ kind: 'ended', message: 'stream closed' }));
  }

  /** Piece payload bytes sent and received (blocks of cancelled requests included). */
  get payloadSent(): number {
    return this.writer.payloadSent;
  }

  get payloadReceived(): number {
    return this.exchange.payloadReceived;
  }

  /** The peer, once the handshakes are done. */
  get remote(): RemotePeer | undefined {
    return this.remote_;
  }

  get isOpen(): boolean {
    return this.phase === 'open';
  }

  get closed(): boolean {
    return this.phase === 'closed';
  }

  get closeReason(): CloseReason | undefined {
    return this.closeReason_;
  }

  get pieceCount(): number {
    return this.local?.pieceCount ?? 0;
  }

  /** Our requests not yet answered in full (cancelled ones until their answer arrives). */
  get pendingRequests(): number {
    return this.exchange.pending;
  }

  /** The peer's requests not yet answered. */
  get servingRequests(): number {
    return this.exchange.serving;
  }

  /** Dials into a swarm: sends our handshake and waits for the acceptor's. */
  handshake(
    swarm: LocalSwarm,
    options: { expectedPeerId?: Buffer } = {},
  ): Promise<HandshakeResult> {
    if (this.phase !== 'new') throw new Error('PeerConnection: handshake already started');
    this.setLocal(swarm);
    this.expectedPeerId = options.expectedPeerId;
    this.phase = 'dialing';
    const result = this.startHandshake();
    this.writer.write(this.handshakeFrame());
    return result;
  }

  /** Accepts a dialer: reads its handshake, asks `resolve` for the swarm, answers. */
  accept(resolve: SwarmResolver): Promise<HandshakeResult> {
    if (this.phase !== 'new') throw new Error('PeerConnection: handshake already started');
    this.resolver = resolve;
    this.phase = 'accepting';
    return this.startHandshake();
  }

  /**
   * Tells the peer we have a piece. The frame rides with the next frame to this peer, or
   * goes out after `haveDelayMs` at the latest (frames keep their order either way).
   */
  sendHave(index: number): boolean {
    if (!this.isOpen || !this.inRange(index)) return false;
    this.writer.queueHave(index);
    return true;
  }

  sendComplete(): boolean {
    if (!this.isOpen) return false;
    this.writer.write(encodeComplete());
    return true;
  }

  /**
   * Requests `[begin, begin + length)` of a piece (default: the whole piece). Refused (false)
   * when closed, out of range, already requested on this connection, or at the request cap.
   */
  request(index: number, begin = 0, length?: number): boolean {
    return this.exchange.request(index, begin, length);
  }

  /** Cancels our request for a piece; blocks still arriving for it are dropped. */
  cancel(index: number): boolean {
    return this.exchange.cancel(index);
  }

  /**
   * Answers the peer's request for `index` starting at `begin` with `data` (a Buffer or a
   * Readable of exactly the requested length, or a `RangeReader` that reads it into the
   * connection's frame buffers), as piece frames. Resolves true once the whole
   * range is written, false if it was not (cancelled, closed, no such request, source short
   * or failing: the peer then gets `CANCELLED` or `UNAVAILABLE`). Never rejects.
   */
  sendPiece(index: number, begin: number, data: PieceData): Promise<boolean> {
    return this.exchange.sendPiece(index, begin, data);
  }

  /** Answers the peer's request for `index` with an error (default `UNAVAILABLE`). */
  reject(index: number, code: number = wireErrorCodes.UNAVAILABLE, message = ''): boolean {
    return this.exchange.reject(index, code, message);
  }

  /** Sends a connection-scoped error (code ≥ 16) and closes. */
  error(code: number, message: string): void {
    this.shutdown({ kind: 'local', message, code });
  }

  /** Closes the connection (gracefully: queued frames are flushed first). */
  close(message = 'closed'): void {
    this.shutdown({ kind: 'local', message });
  }

  /** Stops reading (e.g. while the piece store catches up); `resumeReading` undoes it. */
  pauseReading(): void {
    this.pause('user');
  }

  resumeReading(): void {
    this.resume('user');
  }

  // --- handshake ---------------------------------------------------------------------------

  private setLocal(swarm: LocalSwarm): void {
    if (!/^[0-9a-f]{64}$/.test(swarm.infoHash)) throw new RangeError('info hash must be hex');
    if (swarm.pieceLength <= 0 || swarm.length < 0) throw new RangeError('bad swarm geometry');
    const pieceCount = Math.ceil(swarm.length / swarm.pieceLength);
    if (pieceCount > maxPieceCount || swarm.bitfield.length !== pieceCount) {
      throw new RangeError('bitfield does not match the piece count');
    }
    this.local = { ...swarm, pieceCount };
  }

  private handshakeFrame(): Buffer {
    const local = this.local as LocalSwarm & { pieceCount: number };
    return encodeHandshake({
      version: protocolVersion,
      flags: this.options.origin === true ? handshakeFlags.origin : 0,
      infoHash: Buffer.from(local.infoHash, 'hex'),
      peerId: this.options.peerId,
      pieceCount: local.pieceCount,
      bitfield: local.bitfield.toBuffer(),
    });
  }

  private startHandshake(): Promise<HandshakeResult> {
    const result = new Promise<HandshakeResult>((resolve) => (this.settle = resolve));
    const timeout = this.options.handshakeTimeoutMs ?? wireDefaults.handshakeTimeoutMs;
    this.cancelHandshakeTimer = this.timers.after(timeout, () =>
      this.shutdown({ kind: 'handshake-timeout', message: `no handshake in ${timeout} ms` }),
    );
    readInto(this.socket, (chunk) => this.onData(chunk));
    return result;
  }

  private onHandshake(message: HandshakeMessage): void {
    const version = Math.min(message.version, protocolVersion);
    if (version < minProtocolVersion) {
      this.violate(violation('version-unsupported', `peer speaks up to ${message.version}`));
      return;
    }
    const remote = {
      peerId: message.peerId,
      version,
      origin: (message.flags & handshakeFlags.origin) !== 0,
      bitfield: new Bitfield(message.pieceCount, message.bitfield),
    };
    if (this.phase === 'dialing') {
      const local = this.local as LocalSwarm & { pieceCount: number };
      const infoHash = message.infoHash.toString('hex');
      if (infoHash !== local.infoHash) {
        this.violate(violation('wrong-info-hash', `asked ${local.infoHash}, got ${infoHash}`));
      } else if (this.expectedPeerId !== undefined && !message.peerId.equals(this.expectedPeerId)) {
        this.violate(violation('wrong-peer-id', `got ${message.peerId.toString('hex')}`));
      } else if (message.pieceCount !== local.pieceCount) {
        this.violate(
          violation('piece-count-mismatch', `${message.pieceCount} ≠ ${local.pieceCount}`),
        );
      } else {
        this.open(remote);
      }
      return;
    }
    // Accepting: find the swarm, then answer.
    this.phase = 'resolving';
    const resolver = this.resolver as SwarmResolver;
    let answer: ReturnType<SwarmResolver>;
    try {
      answer = resolver({
        infoHash: message.infoHash.toString('hex'),
        peerId: message.peerId,
        origin: remote.origin,
        pieceCount: message.pieceCount,
      });
    } catch (error) {
      this.error(wireErrorCodes.INTERNAL, `cannot resolve swarm: ${(error as Error).message}`);
      return;
    }
    Promise.resolve(answer).then(
      (swarm) => this.onResolved(swarm, remote),
      (error: unknown) =>
        this.error(wireErrorCodes.INTERNAL, `cannot resolve swarm: ${(error as Error).message}`),
    );
  }

  private onResolved(swarm: LocalSwarm | SwarmRefusal | undefined, remote: RemotePeer): void {
    if (this.phase !== 'resolving') return;
    if (swarm === undefined) {
      this.error(wireErrorCodes.UNKNOWN_SWARM, 'swarm not served here');
      return;
    }
    if ('refuse' in swarm) {
      this.error(swarm.refuse, swarm.message);
      return;
    }
    try {
      this.setLocal(swarm);
    } catch (error) {
      this.error(wireErrorCodes.INTERNAL, (error as Error).message);
      return;
    }
    const local = this.local as LocalSwarm & { pieceCount: number };
    if (remote.bitfield.length !== local.pieceCount) {
      this.violate(
        violation('piece-count-mismatch', `${remote.bitfield.length} ≠ ${local.pieceCount}`),
      );
      return;
    }
    this.writer.write(this.handshakeFrame());
    this.open(remote);
  }

  private open(remote: RemotePeer): void {
    this.phase = 'open';
    this.remote_ = remote;
    this.cancelHandshakeTimer?.();
    this.lastReceived = this.now();
    const keepalive = this.options.keepaliveIntervalMs ?? wireDefaults.keepaliveIntervalMs;
    const idle = this.options.idleTimeoutMs ?? wireDefaults.idleTimeoutMs;
    const period = Math.max(5, Math.min(keepalive, idle) / 4);
    this.stopTicker = this.timers.every(period, () => this.tick());
    this.settle?.(ok(remote));
    this.settle = undefined;
  }

  // --- receiving -----------------------------------------------------------------------------

  private onData(chunk: Buffer): void {
    this.lastReceived = this.now();
    this.framer.push(chunk);
    const ingress = this.options.ingress;
    if (ingress === undefined || this.closed) return;
    // Charged after the fact. In debt, reading stops until the limiter holds a read's worth
    // of tokens again, so a download held to its rate reads in bursts of ~256 KiB: pausing
    // and resuming on every read (two epoll_ctl calls, a timer, a wake-up) cost more CPU than
    // the read.
    const wait = ingress.debit(chunk.length, ingressResumeBytes);
    if (wait === 0 || this.cancelIngressTimer !== undefined) return;
    this.pause('limiter');
    this.cancelIngressTimer = this.timers.after(wait, () => {
      this.cancelIngressTimer = undefined;
      this.resume('limiter');
    });
  }

  private onMessage(message: ControlMessage): void {
    if (message.type === 'handshake') {
      this.onHandshake(message);
      return;
    }
    if (message.type === 'error') {
      this.onError(message);
      return;
    }
    if (message.type === 'keepalive') return;
    if (!this.isOpen) {
      this.violate(violation('message-before-handshake', message.type));
      return;
    }
    const remote = this.remote_ as RemotePeer;
    switch (message.type) {
      case 'have':
        if (!this.checkIndex(message.index, 'have')) return;
        remote.bitfield.set(message.index);
        this.emit('have', message.index);
        return;
      case 'complete':
        remote.bitfield.setAll();
        this.emit('complete');
        return;
      case 'request':
        this.exchange.onRequest(message);
        return;
      case 'cancel':
        this.exchange.onCancel(message);
        return;
    }
  }

  private onError(message: ErrorMessage): void {
    if (!isRequestErrorCode(message.code)) {
      const name = wireErrorNameOf(message.code);
      this.shutdown({
        kind: 'remote-error',
        code: message.code,
        message: `${name}${message.message === '' ? '' : `: ${message.message}`}`,
      });
      return;
    }
    this.exchange.onAnswer(message);
  }

  private onPiece(frame: PieceFrame): void {
    if (!this.isOpen) {
      this.violate(violation('message-before-handshake', 'piece'));
      return;
    }
    this.exchange.onPiece(frame);
  }

  // --- timers, pausing, closing --------------------------------------------------------------

  private tick(): void {
    if (!this.isOpen) return;
    const now = this.now();
    const idle = this.options.idleTimeoutMs ?? wireDefaults.idleTimeoutMs;
    const keepalive = this.options.keepaliveIntervalMs ?? wireDefaults.keepaliveIntervalMs;
    const waitingSince = this.writer.waitingSince;
    if (waitingSince !== undefined && now - waitingSince >= idle) {
      this.shutdown({ kind: 'write-stalled', message: `no drain for ${idle} ms` });
    } else if (this.pauses.size === 0 && now - this.lastReceived >= idle) {
      this.shutdown({ kind: 'idle-timeout', message: `nothing received for ${idle} ms` });
    } else if (now - this.writer.lastSent >= keepalive) {
      this.writer.write(encodeKeepalive());
    }
  }

  private pause(reason: 'limiter' | 'user'): void {
    this.pauses.add(reason);
    this.socket.pause();
  }

  private resume(reason: 'limiter' | 'user'): void {
    if (!this.pauses.delete(reason) || this.pauses.size > 0 || this.closed) return;
    // Time spent paused is ours, not the peer's silence.
    this.lastReceived = this.now();
    this.socket.resume();
  }

  private violate(reason: Violation): void {
    this.shutdown({ kind: 'violation', message: reason.message, violation: reason });
  }

  private shutdown(reason: CloseReason): void {
    if (this.phase === 'closed') return;
    this.phase = 'closed';
    this.closeReason_ = reason;
    this.cancelHandshakeTimer?.();
    this.stopTicker?.();
    this.cancelIngressTimer?.();
    this.framer.stop();
    this.writer.stop();
    this.abort.abort();
    this.writer.wake();
    const stats = this.options.stats;
    if (stats !== undefined) stats.closes[reason.kind] = (stats.closes[reason.kind] ?? 0) + 1;
    if (reason.violation !== undefined) {
      if (stats !== undefined) stats.violations[reason.violation.kind] += 1;
      this.options.onViolation?.(reason.violation, this);
    }
    const farewell =
      reason.kind === 'violation'
        ? encodeError(
            connectionError(
              wireErrorCodes.PROTOCOL_VIOLATION,
              `${reason.violation?.kind}: ${reason.message}`,
            ),
          )
        : reason.kind === 'local' && reason.code !== undefined
          ? encodeError(connectionError(reason.code, reason.message))
          : undefined;
    const socket = this.socket;
    if (reason.kind === 'ended' || reason.kind === 'socket-error' || !socket.writable) {
      socket.destroy();
    } else {
      if (farewell !== undefined) socket.end(farewell);
      else socket.end();
      // A peer that never reads would keep the socket half-open: give the flush a second.
      const cancelKiller = this.timers.after(1_000, () => socket.destroy());
      socket.once('close', () => cancelKiller());
      socket.resume();
    }
    this.exchange.close();
    this.settle?.(fail(reason));
    this.settle = undefined;
    this.emit('close', reason);
  }

  // --- geometry ------------------------------------------------------------------------------

  private inRange(index: number): boolean {
    return Number.isInteger(index) && index >= 0 && index < this.pieceCount;
  }

  private checkIndex(index: number, what: string): boolean {
    if (this.inRange(index)) return true;
    this.violate(
      violation('piece-index-out-of-range', `${what} ${index} of ${this.pieceCount} pieces`),
    );
    return false;
  }

  private pieceSize(index: number): number {
    const local = this.local as LocalSwarm;
    return Math.min(local.pieceLength, local.length - index * local.pieceLength);
  }
}

import { EventEmitter } from 'node:events';
import type { Socket } from 'node:net';
import type { Duplex, Readable } from 'node:stream';
import type { Result } from '../../domain';
import { fail, ok } from '../../domain';
import type { RateLimiter } from '../bandwidth';
import { Bitfield } from './bitfield';
import type { ErrorMessage, HandshakeMessage, RequestMessage } from './codec';
import {
  connectionError,
  encodeCancel,
  encodeComplete,
  encodeError,
  encodeHandshake,
  encodeHave,
  encodeKeepalive,
  encodePieceHeader,
  encodeRequest,
} from './codec';
import {
  defaultBlockLength,
  handshakeFlags,
  isRequestErrorCode,
  maxBlockLength,
  maxPendingRequests,
  maxPieceCount,
  maxRequestLength,
  minProtocolVersion,
  noPieceIndex,
  pieceHeaderLength,
  protocolVersion,
  wireDefaults,
  wireErrorCodes,
  wireErrorNameOf,
} from './constants';
import type { ControlMessage, PieceFrame } from './framer';
import { Framer } from './framer';
import type { Violation, WireStats } from './violations';
import { violation } from './violations';

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

/** One received block of a request, its payload as slices of the socket's buffers. */
export type PieceBlock = {
  readonly index: number;
  /** Offset of this block within the piece. */
  readonly begin: number;
  readonly length: number;
  readonly chunks: readonly Buffer[];
  /** The request this block answers. */
  readonly request: PieceRequest;
  /** Whether this block completes the request. */
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
  /** Payload bytes per piece frame this side sends, ≤ 256 KiB. Default 64 KiB. */
  readonly blockLength?: number;
  /** Host-wide limiters (see `p2p/bandwidth`); every byte read and every piece frame sent. */
  readonly ingress?: RateLimiter;
  readonly egress?: RateLimiter;
  /** Shared counters of violations and closes. */
  readonly stats?: WireStats;
  /** Called when the peer breaks the protocol, just before the connection closes. */
  readonly onViolation?: (violation: Violation, connection: PeerConnection) => void;
  /** Milliseconds, monotonic; default `performance.now`. */
  readonly now?: () => number;
};

type Phase = 'new' | 'dialing' | 'accepting' | 'resolving' | 'open' | 'closed';

type Outgoing = PieceRequest & { received: number; cancelled: boolean };
type Incoming = PieceRequest & {
  state: 'open' | 'queued' | 'sending' | 'answered';
  cancelled: boolean;
};

type HandshakeResult = Result<RemotePeer, CloseReason>;

const noop = (): void => undefined;

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
export class PeerConnection extends EventEmitter<PeerConnectionEvents> {
  readonly socket: Duplex;
  private readonly options: PeerConnectionOptions;
  private readonly now: () => number;
  private readonly blockLength: number;
  private readonly framer: Framer;
  private readonly abort = new AbortController();
  private phase: Phase = 'new';
  private local: (LocalSwarm & { pieceCount: number }) | undefined;
  private remote_: RemotePeer | undefined;
  private expectedPeerId: Buffer | undefined;
  private resolver: SwarmResolver | undefined;
  private settle: ((result: HandshakeResult) => void) | undefined;
  private readonly outgoing = new Map<number, Outgoing>();
  private readonly incoming = new Map<number, Incoming>();
  private sendChain: Promise<unknown> = Promise.resolve();
  private handshakeTimer: NodeJS.Timeout | undefined;
  private ticker: NodeJS.Timeout | undefined;
  private lastReceived: number;
  private lastSent: number;
  private drainWaiters: (() => void)[] = [];
  private drainSince = 0;
  private readonly pauses = new Set<'limiter' | 'user'>();
  private ingressWaits = 0;
  private closeReason_: CloseReason | undefined;
  /** Piece payload bytes sent and received (blocks of cancelled requests included). */
  payloadSent = 0;
  payloadReceived = 0;

  constructor(socket: Duplex, options: PeerConnectionOptions) {
    super();
    const blockLength = options.blockLength ?? defaultBlockLength;
    if (!Number.isInteger(blockLength) || blockLength < 1 || blockLength > maxBlockLength) {
      throw new RangeError(`blockLength must be 1..${maxBlockLength}`);
    }
    this.socket = socket;
    this.options = options;
    this.blockLength = blockLength;
    this.now = options.now ?? (() => performance.now());
    this.lastReceived = this.lastSent = this.now();
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
    socket.on('drain', () => this.flushDrainWaiters());
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
    return this.outgoing.size;
  }

  /** The peer's requests not yet answered. */
  get servingRequests(): number {
    return this.incoming.size;
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
    this.writeFrame(this.handshakeFrame());
    return result;
  }

  /** Accepts a dialer: reads its handshake, asks `resolve` for the swarm, answers. */
  accept(resolve: SwarmResolver): Promise<HandshakeResult> {
    if (this.phase !== 'new') throw new Error('PeerConnection: handshake already started');
    this.resolver = resolve;
    this.phase = 'accepting';
    return this.startHandshake();
  }

  sendHave(index: number): boolean {
    if (!this.isOpen || !this.inRange(index)) return false;
    this.writeFrame(encodeHave(index));
    return true;
  }

  sendComplete(): boolean {
    if (!this.isOpen) return false;
    this.writeFrame(encodeComplete());
    return true;
  }

  /**
   * Requests `[begin, begin + length)` of a piece (default: the whole piece). Refused (false)
   * when closed, out of range, already requested on this connection, or at the request cap.
   */
  request(index: number, begin = 0, length?: number): boolean {
    if (!this.isOpen || !this.inRange(index)) return false;
    const size = length ?? this.pieceSize(index) - begin;
    if (!this.validRange(index, begin, size)) return false;
    if (this.outgoing.has(index) || this.outgoing.size >= maxPendingRequests) return false;
    this.outgoing.set(index, { index, begin, length: size, received: 0, cancelled: false });
    this.writeFrame(encodeRequest(index, begin, size));
    return true;
  }

  /** Cancels our request for a piece; blocks still arriving for it are dropped. */
  cancel(index: number): boolean {
    const request = this.outgoing.get(index);
    if (!this.isOpen || request === undefined || request.cancelled) return false;
    request.cancelled = true;
    this.writeFrame(encodeCancel(request.index, request.begin, request.length));
    return true;
  }

  /**
   * Answers the peer's request for `index` starting at `begin` with `data` (a Buffer or a
   * Readable of exactly the requested length), as piece frames. Resolves true once the whole
   * range is written, false if it was not (cancelled, closed, no such request, source short
   * or failing: the peer then gets `CANCELLED` or `UNAVAILABLE`). Never rejects.
   */
  sendPiece(index: number, begin: number, data: Buffer | Readable): Promise<boolean> {
    const request = this.incoming.get(index);
    if (
      !this.isOpen ||
      request === undefined ||
      request.state !== 'open' ||
      request.begin !== begin
    ) {
      if (!Buffer.isBuffer(data)) data.destroy();
      return Promise.resolve(false);
    }
    request.state = 'queued';
    const sent = this.sendChain.then(() => this.streamResponse(request, data));
    this.sendChain = sent;
    return sent;
  }

  /** Answers the peer's request for `index` with an error (default `UNAVAILABLE`). */
  reject(index: number, code: number = wireErrorCodes.UNAVAILABLE, message = ''): boolean {
    const request = this.incoming.get(index);
    if (!this.isOpen || request === undefined || request.state !== 'open') return false;
    if (!isRequestErrorCode(code)) throw new RangeError(`${code} is not a request error code`);
    this.answer(request, code, message);
    return true;
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
    this.handshakeTimer = setTimeout(
      () => this.shutdown({ kind: 'handshake-timeout', message: `no handshake in ${timeout} ms` }),
      timeout,
    );
    this.handshakeTimer.unref?.();
    this.socket.on('data', (chunk: Buffer) => this.onData(chunk));
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
    this.writeFrame(this.handshakeFrame());
    this.open(remote);
  }

  private open(remote: RemotePeer): void {
    this.phase = 'open';
    this.remote_ = remote;
    clearTimeout(this.handshakeTimer);
    this.lastReceived = this.now();
    const keepalive = this.options.keepaliveIntervalMs ?? wireDefaults.keepaliveIntervalMs;
    const idle = this.options.idleTimeoutMs ?? wireDefaults.idleTimeoutMs;
    this.ticker = setInterval(() => this.tick(), Math.max(5, Math.min(keepalive, idle) / 4));
    this.ticker.unref?.();
    this.settle?.(ok(remote));
    this.settle = undefined;
  }

  // --- receiving -----------------------------------------------------------------------------

  private onData(chunk: Buffer): void {
    this.lastReceived = this.now();
    this.framer.push(chunk);
    const ingress = this.options.ingress;
    if (ingress === undefined || this.closed || ingress.tryTake(chunk.length)) return;
    // Charged after the fact: read on once the limiter has granted what was already read.
    this.ingressWaits += 1;
    this.pause('limiter');
    ingress.take(chunk.length, this.abort.signal).then(() => {
      this.ingressWaits -= 1;
      if (this.ingressWaits === 0) this.resume('limiter');
    }, noop);
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
        this.onRequest(message);
        return;
      case 'cancel':
        this.onCancel(message);
        return;
    }
  }

  private onRequest(message: RequestMessage): void {
    const { index, begin, length } = message;
    if (!this.checkIndex(index, 'request')) return;
    if (!this.validRange(index, begin, length)) {
      this.violate(violation('request-out-of-range', `${index}:${begin}+${length}`));
    } else if (this.incoming.has(index)) {
      this.violate(violation('duplicate-request', `piece ${index} already requested`));
    } else if (this.incoming.size >= maxPendingRequests) {
      this.violate(violation('too-many-requests', `over ${maxPendingRequests}`));
    } else {
      this.incoming.set(index, { index, begin, length, state: 'open', cancelled: false });
      this.emit('request', { index, begin, length });
    }
  }

  private onCancel(message: { index: number; begin: number; length: number }): void {
    if (!this.checkIndex(message.index, 'cancel')) return;
    const request = this.incoming.get(message.index);
    // A cancel crossing our last block is normal: there is nothing left to answer.
    if (request === undefined || request.begin !== message.begin) return;
    if (request.length !== message.length || request.cancelled) return;
    request.cancelled = true;
    if (request.state !== 'sending') this.answer(request, wireErrorCodes.CANCELLED, 'cancelled');
    this.emit('cancel', { index: request.index, begin: request.begin, length: request.length });
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
    const request = this.outgoing.get(message.index);
    if (
      message.index === noPieceIndex ||
      request === undefined ||
      request.begin !== message.begin ||
      request.length !== message.length
    ) {
      this.violate(violation('unsolicited-answer', `error ${message.code} for ${message.index}`));
      return;
    }
    this.outgoing.delete(message.index);
    if (!request.cancelled) {
      this.emit('rejected', toRequest(request), message.code, message.message);
    }
  }

  private onPiece(frame: PieceFrame): void {
    if (!this.isOpen) {
      this.violate(violation('message-before-handshake', 'piece'));
      return;
    }
    if (!this.checkIndex(frame.index, 'piece')) return;
    const request = this.outgoing.get(frame.index);
    if (
      request === undefined ||
      frame.begin !== request.begin + request.received ||
      frame.length > request.length - request.received
    ) {
      this.violate(violation('unsolicited-piece', `${frame.index}:${frame.begin}+${frame.length}`));
      return;
    }
    request.received += frame.length;
    this.payloadReceived += frame.length;
    const done = request.received === request.length;
    if (done) this.outgoing.delete(frame.index);
    if (request.cancelled) return;
    this.emit('piece', {
      index: frame.index,
      begin: frame.begin,
      length: frame.length,
      chunks: frame.chunks,
      request: toRequest(request),
      done,
    });
  }

  // --- sending -------------------------------------------------------------------------------

  private async streamResponse(request: Incoming, data: Buffer | Readable): Promise<boolean> {
    if (this.closed || request.state !== 'queued') {
      if (!Buffer.isBuffer(data)) data.destroy();
      return false;
    }
    request.state = 'sending';
    let sent = 0;
    let failure = '';
    try {
      const source: Iterable<Buffer> | AsyncIterable<Buffer> = Buffer.isBuffer(data)
        ? [data]
        : data;
      stream: for await (const chunk of source) {
        for (let at = 0; at < chunk.length;) {
          const length = Math.min(this.blockLength, chunk.length - at, request.length - sent);
          if (this.closed || request.cancelled || length === 0) break stream;
          const egress = this.options.egress;
          const frameLength = pieceHeaderLength + length;
          if (egress !== undefined && !egress.tryTake(frameLength)) {
            await egress.take(frameLength, this.abort.signal);
          }
          if (this.closed || request.cancelled) break stream;
          const flushed = this.writePieceFrame(
            request.index,
            request.begin + sent,
            chunk.subarray(at, at + length),
          );
          at += length;
          sent += length;
          if (!flushed) await this.waitDrain();
        }
        if (sent === request.length) break;
      }
    } catch (error) {
      failure = (error as Error).message;
    }
    if (!Buffer.isBuffer(data) && !data.destroyed) data.destroy();
    if (this.closed) return false;
    if (sent === request.length) {
      request.state = 'answered';
      this.incoming.delete(request.index);
      return true;
    }
    if (request.cancelled) this.answer(request, wireErrorCodes.CANCELLED, 'cancelled');
    else this.answer(request, wireErrorCodes.UNAVAILABLE, failure || 'source ended early');
    return false;
  }

  private answer(request: Incoming, code: number, message: string): void {
    request.state = 'answered';
    if (this.incoming.get(request.index) === request) this.incoming.delete(request.index);
    this.writeFrame(
      encodeError({
        code,
        index: request.index,
        begin: request.begin,
        length: request.length,
        message,
      }),
    );
  }

  /** Writes one piece frame in one go (header and payload corked together). */
  private writePieceFrame(index: number, begin: number, payload: Buffer): boolean {
    const socket = this.socket;
    if (!socket.writable) return true;
    socket.cork();
    socket.write(encodePieceHeader(index, begin, payload.length));
    const flushed = socket.write(payload);
    socket.uncork();
    this.lastSent = this.now();
    this.payloadSent += payload.length;
    return flushed;
  }

  private writeFrame(frame: Buffer): void {
    if (this.closed || this.socket.destroyed || !this.socket.writable) return;
    this.socket.write(frame);
    this.lastSent = this.now();
  }

  private waitDrain(): Promise<void> {
    if (this.closed || !this.socket.writableNeedDrain) return Promise.resolve();
    return new Promise((resolve) => {
      if (this.drainWaiters.length === 0) this.drainSince = this.now();
      this.drainWaiters.push(resolve);
    });
  }

  private flushDrainWaiters(): void {
    const waiters = this.drainWaiters;
    this.drainWaiters = [];
    for (const resolve of waiters) resolve();
  }

  // --- timers, pausing, closing --------------------------------------------------------------

  private tick(): void {
    if (!this.isOpen) return;
    const now = this.now();
    const idle = this.options.idleTimeoutMs ?? wireDefaults.idleTimeoutMs;
    const keepalive = this.options.keepaliveIntervalMs ?? wireDefaults.keepaliveIntervalMs;
    if (this.drainWaiters.length > 0 && now - this.drainSince >= idle) {
      this.shutdown({ kind: 'write-stalled', message: `no drain for ${idle} ms` });
    } else if (this.pauses.size === 0 && now - this.lastReceived >= idle) {
      this.shutdown({ kind: 'idle-timeout', message: `nothing received for ${idle} ms` });
    } else if (now - this.lastSent >= keepalive) {
      this.writeFrame(encodeKeepalive());
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
    clearTimeout(this.handshakeTimer);
    clearInterval(this.ticker);
    this.framer.stop();
    this.abort.abort();
    this.flushDrainWaiters();
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
      const killer = setTimeout(() => socket.destroy(), 1_000);
      killer.unref?.();
      socket.once('close', () => clearTimeout(killer));
      socket.resume();
    }
    this.outgoing.clear();
    for (const request of this.incoming.values()) request.state = 'answered';
    this.incoming.clear();
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

  private validRange(index: number, begin: number, length: number): boolean {
    return (
      Number.isInteger(begin) &&
      Number.isInteger(length) &&
      begin >= 0 &&
      length >= 1 &&
      length <= maxRequestLength &&
      begin + length <= this.pieceSize(index)
    );
  }
}

const toRequest = (request: PieceRequest): PieceRequest => ({
  index: request.index,
  begin: request.begin,
  length: request.length,
});

import type { Readable } from 'node:stream';
import { fail, ok } from '../../domain';
import type {
  CloseReason,
  HandshakeResult,
  LocalSwarm,
  PeerConnectionEvents,
  PieceRequest,
  RemotePeer,
  SwarmRefusal,
  WireConnection,
} from '../../p2p/wire';
import { isRequestErrorCode, wireDefaults, wireErrorCodes } from '../../p2p/wire';
import type { Bitfield } from '../../p2p/wire';
import type { Recipient, SimEngine } from './engine';
import type { Network, Response, Stream } from './network';

/*
 * One end of a simulated peer connection: the WireConnection the real scheduler talks to,
 * carrying message objects (no bytes) over the simulated network. Control messages arrive
 * one latency after they are sent, in order; piece responses go one after another on the
 * connection's stream (as PeerConnection sends them) and reach the peer as blocks. The
 * request rules are PeerConnection's (`p2p/wire/requestExchange.ts`): one answer per
 * request, cancel answered CANCELLED, blocks of a cancelled request dropped, a request
 * refused while one for the same piece is still unanswered. `have`s wait as the frame
 * writer's do (`p2p/wire/frameWriter.ts`): they go with the next message to the peer, or
 * `wireDefaults.haveDelayMs` after the first of them at the latest, as one message.
 *
 * A batch costs no event of its own (they were a fifth of all events): one that goes along
 * with a message is handled by that message's delivery, first; one whose delay runs out is
 * a single event at the peer, due when the batch arrives, which takes from the sender the
 * `have`s queued by the time the delay ran out (later ones start the next batch).
 */

type Phase = 'new' | 'dialing' | 'accepting' | 'resolving' | 'open' | 'closed';
type Outgoing = PieceRequest & { received: number; cancelled: boolean };
type Incoming = PieceRequest & {
  state: 'open' | 'queued' | 'answered';
  cancelled: boolean;
  response: Response | undefined;
};
type Handshake = {
  readonly infoHash: string;
  readonly peerId: Buffer;
  readonly origin: boolean;
  readonly pieceCount: number;
  readonly bitfield: Bitfield;
};
type Listeners = {
  [E in keyof PeerConnectionEvents]?: Array<(...args: PeerConnectionEvents[E]) => void>;
};

export type SimResolver = (remote: {
  readonly infoHash: string;
  readonly peerId: Buffer;
  readonly origin: boolean;
  readonly pieceCount: number;
}) => Promise<LocalSwarm | SwarmRefusal | undefined>;

/** What both ends of a link share. */
export type LinkContext = { readonly engine: SimEngine; readonly network: Network };

/** Messages delivered without a closure (`SimConnection.deliver`). */
const HAVE = 1;
const REQUEST = 2;
const CANCEL = 3;
const BLOCK = 4;
const LAST_BLOCK = 5;
/** A batch of `have`s (the next of the receiver's `inbox`). */
const HAVES = 6;
/** At the peer: the sender's batch of generation `a` arrives (its delay ran out). */
const TIMED_HAVES = 7;
/** Added to a kind: the next batch of the receiver's `inbox` came with the message, first. */
const WITH_HAVES = 8;

export class SimConnection implements WireConnection, Recipient {
  readonly host: number;
  readonly remoteHost: number;
  peer!: SimConnection;
  remote: RemotePeer | undefined;
  closeReason: CloseReason | undefined;
  /** Payload bytes received (blocks of cancelled requests included). */
  payloadReceived = 0;
  private phase: Phase = 'new';
  private readonly context: LinkContext;
  private readonly self: { readonly peerId: Buffer; readonly origin: boolean };
  private readonly out: Stream;
  private readonly latency: number;
  private local: { pieceCount: number; pieceLength: number; length: number } | undefined;
  private readonly listeners: Listeners = {};
  private readonly outgoing = new Map<number, Outgoing>();
  private readonly incoming = new Map<number, Incoming>();
  private expectedPeerId: Buffer | undefined;
  private settle: ((result: HandshakeResult) => void) | undefined;
  private resolver: SimResolver | undefined;
  /**
   * `have`s waiting to go and when each was queued; the generation of the batch's delay
   * (its TIMED_HAVES is live while the generation holds); batches sent to us with messages.
   */
  private haves: number[] = [];
  private haveAt: number[] = [];
  private haveGeneration = 0;
  private readonly inbox: number[][] = [];

  constructor(
    context: LinkContext,
    host: number,
    remoteHost: number,
    self: { readonly peerId: Buffer; readonly origin: boolean },
  ) {
    this.context = context;
    this.host = host;
    this.remoteHost = remoteHost;
    this.self = self;
    this.out = context.network.stream(host, remoteHost);
    this.latency = context.network.latency(host, remoteHost);
  }

  /** Two ends of a new link: the dialer's and the acceptor's. */
  static pair(
    context: LinkContext,
    dialer: { host: number; peerId: Buffer; origin: boolean },
    acceptor: { host: number; peerId: Buffer; origin: boolean },
  ): [SimConnection, SimConnection] {
    const a = new SimConnection(context, dialer.host, acceptor.host, dialer);
    const b = new SimConnection(context, acceptor.host, dialer.host, acceptor);
    a.peer = b;
    b.peer = a;
    return [a, b];
  }

  get isOpen(): boolean {
    return this.phase === 'open';
  }

  get closed(): boolean {
    return this.phase === 'closed';
  }

  get servingRequests(): number {
    return this.incoming.size;
  }

  on<E extends keyof PeerConnectionEvents>(
    event: E,
    listener: (...args: PeerConnectionEvents[E]) => void,
  ): this {
    const list = (this.listeners[event] ??= []) as Array<typeof listener>;
    list.push(listener);
    return this;
  }

  private emit<E extends keyof PeerConnectionEvents>(
    event: E,
    ...args: PeerConnectionEvents[E]
  ): void {
    const list = this.listeners[event] as
      Array<(...a: PeerConnectionEvents[E]) => void> | undefined;
    if (list === undefined) return;
    for (const listener of list) listener(...args);
  }

  /** Sends to the other end: it runs `deliver` one latency from now, unless it closed. */
  private send(deliver: (peer: SimConnection) => void): void {
    const haves = this.takeHaves();
    if (haves !== undefined) {
      this.peer.inbox.push(haves);
      this.context.engine.send(this.latency, this.peer, HAVES, 0, 0);
    }
    const peer = this.peer;
    this.context.engine.after(this.latency, () => {
      if (peer.phase !== 'closed') deliver(peer);
    });
  }

  /** The frequent messages, as (kind, a, b) without a closure. */
  private post(kind: number, a: number, b: number): void {
    const haves = this.takeHaves();
    if (haves !== undefined) this.peer.inbox.push(haves);
    const flag = haves === undefined ? 0 : WITH_HAVES;
    this.context.engine.send(this.latency, this.peer, kind | flag, a, b);
  }

  /** When the delay of the waiting batch runs out (ms). */
  private haveDeadline(): number {
    return (this.haveAt[0] as number) + wireDefaults.haveDelayMs;
  }

  /**
   * The waiting `have`s a message sent now takes along: all of them while the batch's delay
   * runs; once it ran out (the batch is on its way), only those queued since.
   */
  private takeHaves(): number[] | undefined {
    const haves = this.haves;
    if (haves.length === 0) return undefined;
    const deadline = this.haveDeadline();
    if (deadline > this.context.engine.now) {
      this.haves = [];
      this.haveAt = [];
      this.haveGeneration += 1;
      return haves;
    }
    const due = this.dueCount(deadline);
    if (due === haves.length) return undefined;
    this.haveAt.length = due;
    return haves.splice(due);
  }

  /** How many of the waiting `have`s were queued by `deadline`: the batch on its way. */
  private dueCount(deadline: number): number {
    const later = this.haveAt.findIndex((at) => at > deadline);
    return later < 0 ? this.haveAt.length : later;
  }

  /**
   * The batch whose delay ran out, as it arrives at the peer: the `have`s queued by then.
   * Those queued later are the next batch, with its own delay (scheduled unless `last`).
   */
  private takeDueHaves(last = false): number[] {
    const due = this.dueCount(this.haveDeadline());
    const batch = this.haves.splice(0, due);
    this.haveAt.splice(0, due);
    this.haveGeneration += 1;
    if (!last && this.haves.length > 0) this.scheduleHaves();
    return batch;
  }

  /** The waiting batch's delay: it arrives at the peer a latency after the delay runs out. */
  private scheduleHaves(): void {
    const arrives = this.haveDeadline() + this.latency - this.context.engine.now;
    this.context.engine.send(arrives, this.peer, TIMED_HAVES, this.haveGeneration, 0);
  }

  /** This end closes: a batch already on its way (its delay ran out) still arrives. */
  private dropHaves(): void {
    if (this.haves.length > 0 && this.haveDeadline() <= this.context.engine.now) {
      const arrives = this.haveDeadline() + this.latency;
      const due = this.takeDueHaves(true);
      const peer = this.peer;
      this.context.engine.at(arrives, () => {
        for (const index of due) peer.onHave(index);
      });
    }
    this.haves = [];
    this.haveAt = [];
    this.haveGeneration += 1;
  }

  deliver(kind: number, a: number, b: number): void {
    if (this.phase === 'closed') return;
    if ((kind & WITH_HAVES) !== 0) {
      const haves = this.inbox.shift() as number[];
      for (const index of haves) this.onHave(index);
      // A `have` may have closed the connection (the scheduler's loop runs in the listener).
      if (this.closed) return;
    }
    switch (kind & ~WITH_HAVES) {
      case HAVE:
        this.onHave(a);
        return;
      case REQUEST:
        this.onRequest(a, b);
        return;
      case CANCEL:
        this.onCancel(a);
        return;
      case BLOCK:
        this.onPiece(a, b, false);
        return;
      case LAST_BLOCK:
        this.onPiece(a, b, true);
        return;
      case HAVES: {
        const haves = this.inbox.shift() as number[];
        for (const index of haves) this.onHave(index);
        return;
      }
      case TIMED_HAVES: {
        const sender = this.peer;
        if (a !== sender.haveGeneration) return;
        for (const index of sender.takeDueHaves()) this.onHave(index);
        return;
      }
    }
  }

  // --- handshake -------------------------------------------------------------------------------

  handshake(
    swarm: LocalSwarm,
    options: { expectedPeerId?: Buffer } = {},
  ): Promise<HandshakeResult> {
    if (this.phase !== 'new') throw new Error('SimConnection: handshake already started');
    this.setLocal(swarm);
    this.expectedPeerId = options.expectedPeerId;
    this.phase = 'dialing';
    const result = new Promise<HandshakeResult>((resolve) => (this.settle = resolve));
    const hello = this.hello(swarm);
    this.send((peer) => peer.onHandshake(hello));
    return result;
  }

  /** The acceptor's side: `resolve` finds the swarm the dialer asks for. */
  accept(resolve: SimResolver): Promise<HandshakeResult> {
    if (this.phase !== 'new') throw new Error('SimConnection: handshake already started');
    this.resolver = resolve;
    this.phase = 'accepting';
    return new Promise<HandshakeResult>((done) => (this.settle = done));
  }

  private hello(swarm: LocalSwarm): Handshake {
    return {
      infoHash: swarm.infoHash,
      peerId: this.self.peerId,
      origin: this.self.origin,
      pieceCount: swarm.bitfield.length,
      bitfield: swarm.bitfield.clone(),
    };
  }

  private setLocal(swarm: LocalSwarm): void {
    this.local = {
      pieceCount: Math.ceil(swarm.length / swarm.pieceLength),
      pieceLength: swarm.pieceLength,
      length: swarm.length,
    };
  }

  private onHandshake(message: Handshake): void {
    const remote: RemotePeer = {
      peerId: message.peerId,
      version: 1,
      origin: message.origin,
      bitfield: message.bitfield,
    };
    if (this.phase === 'dialing') {
      const expected = this.expectedPeerId;
      if (expected !== undefined && !message.peerId.equals(expected)) {
        this.shutdown({ kind: 'violation', message: 'wrong peer id' }, true);
      } else this.open(remote);
      return;
    }
    if (this.phase !== 'accepting') return;
    this.phase = 'resolving';
    const resolver = this.resolver as SimResolver;
    void resolver({
      infoHash: message.infoHash,
      peerId: message.peerId,
      origin: message.origin,
      pieceCount: message.pieceCount,
    }).then((swarm) => {
      if (this.phase !== 'resolving') return;
      if (swarm === undefined) this.error(wireErrorCodes.UNKNOWN_SWARM, 'swarm not served here');
      else if ('refuse' in swarm) this.error(swarm.refuse, swarm.message);
      else {
        this.setLocal(swarm);
        const hello = this.hello(swarm);
        this.send((peer) => peer.onHandshake(hello));
        this.open(remote);
      }
    });
  }

  private open(remote: RemotePeer): void {
    this.phase = 'open';
    this.remote = remote;
    this.settle?.(ok(remote));
    this.settle = undefined;
  }

  // --- control messages ------------------------------------------------------------------------

  sendHave(index: number): boolean {
    if (!this.isOpen || !this.inRange(index)) return false;
    const delay = wireDefaults.haveDelayMs;
    if (delay <= 0) {
      this.post(HAVE, index, 0);
      return true;
    }
    this.haves.push(index);
    this.haveAt.push(this.context.engine.now);
    if (this.haves.length === 1) this.scheduleHaves();
    return true;
  }

  sendComplete(): boolean {
    if (!this.isOpen) return false;
    this.send((peer) => peer.onComplete());
    return true;
  }

  private onHave(index: number): void {
    if (!this.isOpen) return;
    (this.remote as RemotePeer).bitfield.set(index);
    this.emit('have', index);
  }

  private onComplete(): void {
    if (!this.isOpen) return;
    (this.remote as RemotePeer).bitfield.setAll();
    this.emit('complete');
  }

  // --- our requests ----------------------------------------------------------------------------

  request(index: number, begin = 0, length?: number): boolean {
    if (!this.isOpen || !this.inRange(index)) return false;
    if (begin !== 0) throw new RangeError('SimConnection: only whole pieces are requested');
    const size = length ?? this.pieceSize(index) - begin;
    if (this.outgoing.has(index) || this.outgoing.size >= 64) return false;
    // Whole pieces only (what the scheduler asks for): the message carries index and length.
    this.outgoing.set(index, { index, begin, length: size, received: 0, cancelled: false });
    this.post(REQUEST, index, size);
    return true;
  }

  cancel(index: number): boolean {
    const request = this.outgoing.get(index);
    if (!this.isOpen || request === undefined || request.cancelled) return false;
    request.cancelled = true;
    this.post(CANCEL, index, 0);
    return true;
  }

  private onPiece(index: number, bytes: number, done: boolean): void {
    if (!this.isOpen) return;
    const request = this.outgoing.get(index);
    if (request === undefined) return;
    const begin = request.begin + request.received;
    request.received += bytes;
    this.payloadReceived += bytes;
    if (done) this.outgoing.delete(index);
    if (request.cancelled) return;
    this.emit('piece', {
      index,
      begin,
      length: bytes,
      chunks: [],
      request: { index, begin: request.begin, length: request.length },
      done,
    });
  }

  private onAnswer(index: number, code: number, message: string): void {
    if (!this.isOpen) return;
    const request = this.outgoing.get(index);
    if (request === undefined) return;
    this.outgoing.delete(index);
    if (!request.cancelled) {
      this.emit('rejected', { index, begin: request.begin, length: request.length }, code, message);
    }
  }

  // --- the peer's requests ---------------------------------------------------------------------

  private onRequest(index: number, length: number): void {
    if (!this.isOpen || this.incoming.has(index)) return;
    const request: PieceRequest = { index, begin: 0, length };
    this.incoming.set(index, {
      index,
      begin: 0,
      length,
      state: 'open',
      cancelled: false,
      response: undefined,
    });
    this.emit('request', request);
  }

  private onCancel(index: number): void {
    if (!this.isOpen) return;
    const request = this.incoming.get(index);
    if (request === undefined || request.cancelled) return;
    request.cancelled = true;
    if (request.response !== undefined) this.context.network.stop(this.out, request.response);
    else this.answer(request, wireErrorCodes.CANCELLED, 'cancelled');
    this.emit('cancel', { index, begin: request.begin, length: request.length });
  }

  sendPiece(index: number, begin: number, _data: Buffer | Readable): Promise<boolean> {
    const request = this.incoming.get(index);
    if (!this.isOpen || request === undefined || request.state !== 'open') {
      return Promise.resolve(false);
    }
    if (request.begin !== begin) return Promise.resolve(false);
    request.state = 'queued';
    return new Promise<boolean>((resolve) => {
      const response: Response = {
        length: request.length,
        onBlock: (bytes, done) => this.post(done ? LAST_BLOCK : BLOCK, index, bytes),
        onDone: (sent) => {
          request.response = undefined;
          if (sent) {
            // The tail may still be in the send buffer: it arrives, a cancel no longer stops it.
            request.state = 'answered';
            if (this.incoming.get(index) === request) this.incoming.delete(index);
          } else if (request.cancelled && this.isOpen) {
            this.answer(request, wireErrorCodes.CANCELLED, 'cancelled');
          }
          resolve(sent);
        },
      };
      request.response = response;
      this.context.network.send(this.out, response);
    });
  }

  reject(index: number, code: number = wireErrorCodes.UNAVAILABLE, message = ''): boolean {
    const request = this.incoming.get(index);
    if (!this.isOpen || request === undefined || request.state !== 'open') return false;
    if (!isRequestErrorCode(code)) throw new RangeError(`${code} is not a request error code`);
    this.answer(request, code, message);
    return true;
  }

  private answer(request: Incoming, code: number, message: string): void {
    request.state = 'answered';
    if (this.incoming.get(request.index) === request) this.incoming.delete(request.index);
    const index = request.index;
    this.send((peer) => peer.onAnswer(index, code, message));
  }

  // --- closing ---------------------------------------------------------------------------------

  error(code: number, message: string): void {
    this.shutdown({ kind: 'local', message, code }, true);
  }

  close(message = 'closed'): void {
    this.shutdown({ kind: 'local', message }, true);
  }

  pauseReading(): void {}

  resumeReading(): void {}

  /** The host died: the peer sees the stream end; this side reports nothing. */
  kill(): void {
    if (this.phase === 'closed') return;
    this.phase = 'closed';
    this.dropHaves();
    this.context.network.close(this.out);
    this.outgoing.clear();
    this.incoming.clear();
    this.send((peer) => peer.shutdown({ kind: 'ended', message: 'peer closed the stream' }, false));
  }

  private shutdown(reason: CloseReason, tellPeer: boolean): void {
    if (this.phase === 'closed') return;
    this.phase = 'closed';
    this.dropHaves();
    this.closeReason = reason;
    this.context.network.close(this.out);
    this.outgoing.clear();
    for (const request of this.incoming.values()) request.state = 'answered';
    this.incoming.clear();
    if (tellPeer) {
      const code = reason.kind === 'local' ? reason.code : wireErrorCodes.PROTOCOL_VIOLATION;
      const message = reason.message;
      this.send((peer) =>
        peer.shutdown(
          code === undefined
            ? { kind: 'ended', message: 'peer closed the stream' }
            : { kind: 'remote-error', code, message },
          false,
        ),
      );
    }
    this.settle?.(fail(reason));
    this.settle = undefined;
    this.emit('close', reason);
  }

  // --- geometry --------------------------------------------------------------------------------

  private inRange(index: number): boolean {
    return index >= 0 && index < (this.local?.pieceCount ?? 0);
  }

  private pieceSize(index: number): number {
    const local = this.local as { pieceLength: number; length: number };
    return Math.min(local.pieceLength, local.length - index * local.pieceLength);
  }
}

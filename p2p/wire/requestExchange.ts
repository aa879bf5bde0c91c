import type { ErrorMessage, RequestMessage } from './codec';
import { encodeCancel, encodeError, encodeRequest } from './codec';
import type { PieceBlock, PieceData, PieceRequest } from './connectionTypes';
import {
  isRequestErrorCode,
  maxPendingRequests,
  maxRequestLength,
  noPieceIndex,
  wireErrorCodes,
} from './constants';
import type { FrameWriter } from './frameWriter';
import type { PieceFrame } from './framer';
import type { Violation } from './violations';
import { violation } from './violations';

type Outgoing = PieceRequest & { received: number; cancelled: boolean };
type Incoming = PieceRequest & {
  state: 'open' | 'queued' | 'sending' | 'answered';
  cancelled: boolean;
};

/** What a request exchange needs from its connection, and where it reports. */
export type ExchangeHost = {
  /** Whether the handshakes are done and the connection is not closed. */
  isOpen(): boolean;
  closed(): boolean;
  /** Whether `index` names a piece of the swarm. */
  inRange(index: number): boolean;
  /** As `inRange`, but a peer's index out of range is a violation (the connection closes). */
  checkIndex(index: number, what: string): boolean;
  /** The length of piece `index` (in range). */
  pieceSize(index: number): number;
  violate(reason: Violation): void;
  /** The connection's events: the peer asked, cancelled, sent a block, refused our request. */
  request(request: PieceRequest): void;
  cancel(request: PieceRequest): void;
  piece(block: PieceBlock): void;
  rejected(request: PieceRequest, code: number, message: string): void;
};

/**
 * The requests of one open connection, both ways: ours until their answer has arrived in
 * full, the peer's until this side answered them. Every request gets one answer — the range as
 * piece frames, or a request-scoped error — and this side's responses go out one after
 * another, in the order `sendPiece` was called. `PeerConnection` documents the verbs.
 */
export class RequestExchange {
  /** Piece payload bytes received (blocks of cancelled requests included). */
  payloadReceived = 0;
  private readonly host: ExchangeHost;
  private readonly writer: FrameWriter;
  private readonly outgoing = new Map<number, Outgoing>();
  private readonly incoming = new Map<number, Incoming>();
  private sendChain: Promise<unknown> = Promise.resolve();

  constructor(host: ExchangeHost, writer: FrameWriter) {
    this.host = host;
    this.writer = writer;
  }

  /** Our requests not yet answered in full (cancelled ones until their answer arrives). */
  get pending(): number {
    return this.outgoing.size;
  }

  /** The peer's requests not yet answered. */
  get serving(): number {
    return this.incoming.size;
  }

  // --- our requests --------------------------------------------------------------------------

  request(index: number, begin = 0, length?: number): boolean {
    if (!this.host.isOpen() || !this.host.inRange(index)) return false;
    const size = length ?? this.host.pieceSize(index) - begin;
    if (!this.validRange(index, begin, size)) return false;
    if (this.outgoing.has(index) || this.outgoing.size >= maxPendingRequests) return false;
    this.outgoing.set(index, { index, begin, length: size, received: 0, cancelled: false });
    this.writer.write(encodeRequest(index, begin, size));
    return true;
  }

  cancel(index: number): boolean {
    const request = this.outgoing.get(index);
    if (!this.host.isOpen() || request === undefined || request.cancelled) return false;
    request.cancelled = true;
    this.writer.write(encodeCancel(request.index, request.begin, request.length));
    return true;
  }

  /**
   * Part of a block of one of our requests arrived (the connection is open). A frame is
   * checked against the request from its first part, so a frame that would overrun the
   * request is refused before any of it is handed on.
   */
  onPiece(frame: PieceFrame): void {
    if (!this.host.checkIndex(frame.index, 'piece')) return;
    const request = this.outgoing.get(frame.index);
    if (
      request === undefined ||
      frame.begin !== request.begin + request.received ||
      frame.frameLength - frame.offset > request.length - request.received
    ) {
      this.host.violate(
        violation('unsolicited-piece', `${frame.index}:${frame.begin}+${frame.length}`),
      );
      return;
    }
    request.received += frame.length;
    this.payloadReceived += frame.length;
    const done = request.received === request.length;
    if (done) this.outgoing.delete(frame.index);
    if (request.cancelled) return;
    this.host.piece({
      index: frame.index,
      begin: frame.begin,
      length: frame.length,
      chunks: frame.chunks,
      request: toRequest(request),
      done,
    });
  }

  /** A request-scoped error arrived: the peer's answer to one of our requests. */
  onAnswer(message: ErrorMessage): void {
    const request = this.outgoing.get(message.index);
    if (
      message.index === noPieceIndex ||
      request === undefined ||
      request.begin !== message.begin ||
      request.length !== message.length
    ) {
      this.host.violate(
        violation('unsolicited-answer', `error ${message.code} for ${message.index}`),
      );
      return;
    }
    this.outgoing.delete(message.index);
    if (!request.cancelled) {
      this.host.rejected(toRequest(request), message.code, message.message);
    }
  }

  // --- the peer's requests -------------------------------------------------------------------

  onRequest(message: RequestMessage): void {
    const { index, begin, length } = message;
    if (!this.host.checkIndex(index, 'request')) return;
    if (!this.validRange(index, begin, length)) {
      this.host.violate(violation('request-out-of-range', `${index}:${begin}+${length}`));
    } else if (this.incoming.has(index)) {
      this.host.violate(violation('duplicate-request', `piece ${index} already requested`));
    } else if (this.incoming.size >= maxPendingRequests) {
      this.host.violate(violation('too-many-requests', `over ${maxPendingRequests}`));
    } else {
      this.incoming.set(index, { index, begin, length, state: 'open', cancelled: false });
      this.host.request({ index, begin, length });
    }
  }

  onCancel(message: { index: number; begin: number; length: number }): void {
    if (!this.host.checkIndex(message.index, 'cancel')) return;
    const request = this.incoming.get(message.index);
    // A cancel crossing our last block is normal: there is nothing left to answer.
    if (request === undefined || request.begin !== message.begin) return;
    if (request.length !== message.length || request.cancelled) return;
    request.cancelled = true;
    if (request.state !== 'sending') this.answer(request, wireErrorCodes.CANCELLED, 'cancelled');
    this.host.cancel({ index: request.index, begin: request.begin, length: request.length });
  }

  sendPiece(index: number, begin: number, data: PieceData): Promise<boolean> {
    const request = this.incoming.get(index);
    if (
      !this.host.isOpen() ||
      request === undefined ||
      request.state !== 'open' ||
      request.begin !== begin
    ) {
      discard(data);
      return Promise.resolve(false);
    }
    request.state = 'queued';
    const sent = this.sendChain.then(() => this.streamResponse(request, data));
    this.sendChain = sent;
    return sent;
  }

  reject(index: number, code: number, message: string): boolean {
    const request = this.incoming.get(index);
    if (!this.host.isOpen() || request === undefined || request.state !== 'open') return false;
    if (!isRequestErrorCode(code)) throw new RangeError(`${code} is not a request error code`);
    this.answer(request, code, message);
    return true;
  }

  /** The connection closed: nothing more is answered, and no answer is awaited. */
  close(): void {
    this.outgoing.clear();
    for (const request of this.incoming.values()) request.state = 'answered';
    this.incoming.clear();
  }

  private async streamResponse(request: Incoming, data: PieceData): Promise<boolean> {
    if (this.host.closed() || request.state !== 'queued') {
      discard(data);
      return false;
    }
    request.state = 'sending';
    const { sent, failure } = await this.writer.sendBlocks(
      request,
      data,
      () => this.host.closed() || request.cancelled,
    );
    if (this.host.closed()) return false;
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
    this.writer.write(
      encodeError({
        code,
        index: request.index,
        begin: request.begin,
        length: request.length,
        message,
      }),
    );
  }

  private validRange(index: number, begin: number, length: number): boolean {
    return (
      Number.isInteger(begin) &&
      Number.isInteger(length) &&
      begin >= 0 &&
      length >= 1 &&
      length <= maxRequestLength &&
      begin + length <= this.host.pieceSize(index)
    );
  }
}

const toRequest = (request: PieceRequest): PieceRequest => ({
  index: request.index,
  begin: request.begin,
  length: request.length,
});

/** Lets go of a response's source that will not be sent (a Readable is destroyed). */
const discard = (data: PieceData): void => {
  if (!Buffer.isBuffer(data) && 'destroy' in data) data.destroy();
};

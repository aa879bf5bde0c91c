import type { Message, PieceMessage } from './codec';
import { checkFrameHeader, decodeBody } from './codec';
import type { MessageType } from './constants';
import { frameHeaderLength } from './constants';
import type { Violation } from './violations';
import { violation } from './violations';

/** One `piece` frame: its payload as slices of the received buffers, never copied. */
export type PieceFrame = {
  readonly index: number;
  readonly begin: number;
  /** Payload bytes (the sum of the chunks' lengths). */
  readonly length: number;
  readonly chunks: readonly Buffer[];
};

export type ControlMessage = Exclude<Message, PieceMessage>;

export type FramerHandlers = {
  readonly message: (message: ControlMessage) => void;
  readonly piece: (frame: PieceFrame) => void;
  /** Called at most once; the framer then ignores all further input. */
  readonly violation: (violation: Violation) => void;
};

export type FramerOptions = {
  /**
   * The first frame must be a handshake (or an error from an acceptor refusing us); anything
   * else there is reported as `bad-magic`: the stream is not Shoal. Default true.
   */
  readonly expectHandshake?: boolean;
};

/**
 * Incremental frame parser: fed the socket's chunks as they come, it waits until a frame's
 * header (5 bytes) is buffered, checks the length against the caps for its message before
 * buffering the body, then waits for the body and hands over the message. It never throws on
 * input: the first violation is reported and parsing stops. Memory is bounded by the largest
 * frame (`maxFrameLength`); piece payloads are passed on as slices of the received chunks.
 */
export class Framer {
  private readonly handlers: FramerHandlers;
  private readonly chunks: Buffer[] = [];
  /** Read offset within `chunks[0]`. */
  private offset = 0;
  private buffered = 0;
  private frameType: MessageType | undefined;
  private bodyLength = 0;
  private firstFrame: boolean;
  private handshakeSeen = false;
  private halted = false;

  constructor(handlers: FramerHandlers, options: FramerOptions = {}) {
    this.handlers = handlers;
    this.firstFrame = options.expectHandshake ?? true;
  }

  /** Bytes received and not yet handed over. */
  get bufferedBytes(): number {
    return this.buffered;
  }

  get stopped(): boolean {
    return this.halted;
  }

  /** Stops parsing, also in the middle of a chunk (the connection closes from a handler). */
  stop(): void {
    this.halted = true;
    this.chunks.length = 0;
    this.buffered = 0;
    this.offset = 0;
  }

  push(chunk: Buffer): void {
    if (this.halted || chunk.length === 0) return;
    this.chunks.push(chunk);
    this.buffered += chunk.length;
    while (!this.halted) {
      if (this.frameType === undefined) {
        if (this.buffered < frameHeaderLength) return;
        const header = this.consume(frameHeaderLength);
        if (!this.startFrame(header.readUInt32BE(0), header.readUInt8(4))) return;
      } else {
        if (this.buffered < this.bodyLength) return;
        const type = this.frameType;
        this.frameType = undefined;
        if (type === 'piece') this.emitPiece();
        else this.emitMessage(type);
      }
    }
  }

  private startFrame(length: number, id: number): boolean {
    const header = checkFrameHeader(length, id);
    if (this.firstFrame) {
      this.firstFrame = false;
      if (!header.ok) return this.fail(violation('bad-magic', header.error.message));
      if (header.value !== 'handshake' && header.value !== 'error') {
        return this.fail(violation('bad-magic', `first frame is ${header.value}`));
      }
    }
    if (!header.ok) return this.fail(header.error);
    if (header.value === 'handshake') {
      if (this.handshakeSeen) return this.fail(violation('unexpected-handshake', 'twice'));
      this.handshakeSeen = true;
    }
    this.frameType = header.value;
    this.bodyLength = length - 1;
    return true;
  }

  private emitPiece(): void {
    const header = this.consume(8);
    const length = this.bodyLength - 8;
    const chunks = this.consumeSlices(length);
    this.handlers.piece({
      index: header.readUInt32BE(0),
      begin: header.readUInt32BE(4),
      length,
      chunks,
    });
  }

  private emitMessage(type: MessageType): void {
    const decoded = decodeBody(type, this.consume(this.bodyLength));
    if (!decoded.ok) {
      this.fail(decoded.error);
      return;
    }
    this.handlers.message(decoded.value as ControlMessage);
  }

  private fail(reason: Violation): false {
    this.stop();
    this.handlers.violation(reason);
    return false;
  }

  /** `n` buffered bytes as one buffer: a slice when they sit in one chunk, else a copy. */
  private consume(n: number): Buffer {
    const first = this.chunks[0];
    if (first !== undefined && first.length - this.offset >= n) {
      const out = first.subarray(this.offset, this.offset + n);
      this.advance(n);
      return out;
    }
    const out = Buffer.allocUnsafe(n);
    let filled = 0;
    for (const slice of this.consumeSlices(n)) filled += slice.copy(out, filled);
    return out;
  }

  /** `n` buffered bytes as slices of the received chunks. */
  private consumeSlices(n: number): Buffer[] {
    const out: Buffer[] = [];
    let left = n;
    while (left > 0) {
      const chunk = this.chunks[0];
      if (chunk === undefined) break;
      const take = Math.min(left, chunk.length - this.offset);
      out.push(chunk.subarray(this.offset, this.offset + take));
      this.advance(take);
      left -= take;
    }
    return out;
  }

  private advance(n: number): void {
    this.buffered -= n;
    this.offset += n;
    const first = this.chunks[0];
    if (first !== undefined && this.offset >= first.length) {
      this.chunks.shift();
      this.offset = 0;
    }
  }
}

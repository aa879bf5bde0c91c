import type { Message, PieceMessage } from './codec';
import { checkFrameHeader, decodeBody } from './codec';
import type { MessageType } from './constants';
import { frameHeaderLength } from './constants';
import type { Violation } from './violations';
import { violation } from './violations';

/**
 * Part of one `piece` frame's payload, as it arrived: a frame's payload is handed over in
 * one or more parts, in order, as the socket delivers it (no frame is buffered whole). The
 * chunks are views of the received buffer, valid only until the handler returns: a handler
 * copies what it keeps (the socket reuses its read buffer).
 */
export type PieceFrame = {
  readonly index: number;
  /** Offset of this part within the piece. */
  readonly begin: number;
  /** Payload bytes in this part (the sum of the chunks' lengths). */
  readonly length: number;
  readonly chunks: readonly Buffer[];
  /** Offset of this part within its frame's payload (0: the frame's first part). */
  readonly offset: number;
  /** Payload bytes of the whole frame. */
  readonly frameLength: number;
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

/** Header of a piece body: index and begin. */
const pieceBodyHeaderLength = 8;
const noBody = Buffer.alloc(0);
/** A partial buffer grown for a handshake's bitfield is dropped once the handshake is in. */
const smallPartial = 4096;

/**
 * Incremental frame parser: fed the socket's chunks as they come, it waits until a frame's
 * header (5 bytes) is in, checks the length against the caps for its message before taking
 * the body, then hands over control messages whole and piece payloads in parts as they
 * arrive. It keeps nothing of a chunk after `push` returns (headers and control frames cut
 * by a chunk boundary are copied into a small buffer of its own), so the caller may reuse
 * its read buffer. It never throws on input: the first violation is reported and parsing
 * stops. Memory is bounded by the largest control frame (a handshake's bitfield).
 */
export class Framer {
  private readonly handlers: FramerHandlers;
  /** Bytes of a header or control body cut by a chunk boundary. */
  private partial: Buffer = Buffer.alloc(64);
  private partialLength = 0;
  private stage: 'header' | 'body' | 'pieceHeader' | 'payload' = 'header';
  private frameType: MessageType | undefined;
  private bodyLength = 0;
  private pieceIndex = 0;
  private pieceBegin = 0;
  private payloadLength = 0;
  private payloadDone = 0;
  private firstFrame: boolean;
  private handshakeSeen = false;
  private halted = false;

  constructor(handlers: FramerHandlers, options: FramerOptions = {}) {
    this.handlers = handlers;
    this.firstFrame = options.expectHandshake ?? true;
  }

  /** Bytes received and held, waiting for the rest of their frame. */
  get bufferedBytes(): number {
    return this.partialLength;
  }

  get stopped(): boolean {
    return this.halted;
  }

  /** Stops parsing, also in the middle of a chunk (the connection closes from a handler). */
  stop(): void {
    this.halted = true;
    this.partialLength = 0;
  }

  push(chunk: Buffer): void {
    let at = 0;
    while (!this.halted && at < chunk.length) {
      if (this.stage === 'payload') {
        const n = Math.min(this.payloadLength - this.payloadDone, chunk.length - at);
        const offset = this.payloadDone;
        this.payloadDone += n;
        if (this.payloadDone === this.payloadLength) this.stage = 'header';
        this.handlers.piece({
          index: this.pieceIndex,
          begin: this.pieceBegin + offset,
          length: n,
          chunks: [chunk.subarray(at, at + n)],
          offset,
          frameLength: this.payloadLength,
        });
        at += n;
        continue;
      }
      const need =
        this.stage === 'header'
          ? frameHeaderLength
          : this.stage === 'pieceHeader'
            ? pieceBodyHeaderLength
            : this.bodyLength;
      let bytes: Buffer;
      if (this.partialLength === 0 && chunk.length - at >= need) {
        bytes = chunk.subarray(at, at + need);
        at += need;
      } else {
        const n = Math.min(need - this.partialLength, chunk.length - at);
        if (this.partial.length < need) {
          const grown = Buffer.alloc(Math.max(need, 2 * this.partial.length));
          this.partial.copy(grown, 0, 0, this.partialLength);
          this.partial = grown;
        }
        chunk.copy(this.partial, this.partialLength, at, at + n);
        this.partialLength += n;
        at += n;
        if (this.partialLength < need) return;
        bytes = this.partial.subarray(0, need);
        this.partialLength = 0;
      }
      this.consume(bytes);
    }
  }

  /** A whole header, piece header or control body (a view, valid during this call). */
  private consume(bytes: Buffer): void {
    switch (this.stage) {
      case 'header':
        this.startFrame(bytes.readUInt32BE(0), bytes.readUInt8(4));
        return;
      case 'pieceHeader':
        this.pieceIndex = bytes.readUInt32BE(0);
        this.pieceBegin = bytes.readUInt32BE(4);
        this.payloadLength = this.bodyLength - pieceBodyHeaderLength;
        this.payloadDone = 0;
        this.stage = this.payloadLength > 0 ? 'payload' : 'header';
        return;
      case 'body': {
        this.stage = 'header';
        const decoded = decodeBody(this.frameType as MessageType, bytes);
        if (this.partial.length > smallPartial) this.partial = Buffer.alloc(64);
        if (!decoded.ok) {
          this.fail(decoded.error);
          return;
        }
        this.handlers.message(decoded.value as ControlMessage);
        return;
      }
      default:
        return;
    }
  }

  private startFrame(length: number, id: number): void {
    const header = checkFrameHeader(length, id);
    if (this.firstFrame) {
      this.firstFrame = false;
      if (!header.ok) {
        this.fail(violation('bad-magic', header.error.message));
        return;
      }
      if (header.value !== 'handshake' && header.value !== 'error') {
        this.fail(violation('bad-magic', `first frame is ${header.value}`));
        return;
      }
    }
    if (!header.ok) {
      this.fail(header.error);
      return;
    }
    if (header.value === 'handshake') {
      if (this.handshakeSeen) {
        this.fail(violation('unexpected-handshake', 'twice'));
        return;
      }
      this.handshakeSeen = true;
    }
    this.frameType = header.value;
    this.bodyLength = length - 1;
    if (header.value === 'piece') {
      this.stage = 'pieceHeader';
    } else if (this.bodyLength === 0) {
      // No body (complete, keepalive): decoded from nothing.
      this.stage = 'body';
      this.consume(noBody);
    } else {
      this.stage = 'body';
    }
  }

  private fail(reason: Violation): void {
    this.stop();
    this.handlers.violation(reason);
  }
}

import type { Duplex, Readable } from 'node:stream';
import type { RateLimiter } from '../bandwidth';
import { encodePieceHeader } from './codec';
import type { PieceRequest } from './connectionTypes';
import { pieceHeaderLength } from './constants';

export type FrameWriterOptions = {
  readonly socket: Duplex;
  /** Milliseconds, monotonic. */
  readonly now: () => number;
  /** Payload bytes per piece frame. */
  readonly blockLength: number;
  readonly egress?: RateLimiter;
  /** Aborts a wait for egress tokens (the connection closed). */
  readonly signal: AbortSignal;
  /** Whether the connection is closed: nothing more is written then. */
  readonly closed: () => boolean;
};

/**
 * The sending half of a peer connection. Control frames (a few bytes each) are written at
 * once; a response's piece frames one at a time, each after taking its egress tokens, header
 * and payload corked together, and the next only after `drain` when `write()` returned
 * false. The bytes of a piece are never copied here: blocks are slices of the source's
 * buffers.
 */
export class FrameWriter {
  /** When the last frame was written (for keepalives). */
  lastSent: number;
  /** Piece payload bytes written (blocks of cancelled requests included). */
  payloadSent = 0;
  private readonly options: FrameWriterOptions;
  private drainWaiters: (() => void)[] = [];
  private drainSince = 0;

  constructor(options: FrameWriterOptions) {
    this.options = options;
    this.lastSent = options.now();
    options.socket.on('drain', () => this.wake());
  }

  /** Since when a write has waited for `drain`, or undefined when none waits. */
  get waitingSince(): number | undefined {
    return this.drainWaiters.length > 0 ? this.drainSince : undefined;
  }

  /** Writes a control frame (nothing once the connection or the socket is closed). */
  write(frame: Buffer): void {
    const socket = this.options.socket;
    if (this.options.closed() || socket.destroyed || !socket.writable) return;
    socket.write(frame);
    this.lastSent = this.options.now();
  }

  /**
   * Sends `[request.begin, request.begin + request.length)` from `data` (a Buffer or a
   * Readable) as piece frames until it is all sent, the source ends or fails, or `stopped()`
   * says so (cancelled, closed). Returns the payload bytes sent and the source's error
   * message, if any; a Readable is destroyed either way.
   */
  async sendBlocks(
    request: PieceRequest,
    data: Buffer | Readable,
    stopped: () => boolean,
  ): Promise<{ sent: number; failure: string }> {
    const { blockLength, egress, signal } = this.options;
    let sent = 0;
    let failure = '';
    try {
      const source: Iterable<Buffer> | AsyncIterable<Buffer> = Buffer.isBuffer(data)
        ? [data]
        : data;
      stream: for await (const chunk of source) {
        for (let at = 0; at < chunk.length;) {
          const length = Math.min(blockLength, chunk.length - at, request.length - sent);
          if (stopped() || length === 0) break stream;
          const frameLength = pieceHeaderLength + length;
          if (egress !== undefined && !egress.tryTake(frameLength)) {
            await egress.take(frameLength, signal);
          }
          if (stopped()) break stream;
          const flushed = this.writePiece(
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
    return { sent, failure };
  }

  /** Releases every write waiting for `drain` (on drain, and when the connection closes). */
  wake(): void {
    const waiters = this.drainWaiters;
    this.drainWaiters = [];
    for (const resolve of waiters) resolve();
  }

  /** Writes one piece frame in one go (header and payload corked together). */
  private writePiece(index: number, begin: number, payload: Buffer): boolean {
    const socket = this.options.socket;
    if (!socket.writable) return true;
    socket.cork();
    socket.write(encodePieceHeader(index, begin, payload.length));
    const flushed = socket.write(payload);
    socket.uncork();
    this.lastSent = this.options.now();
    this.payloadSent += payload.length;
    return flushed;
  }

  private waitDrain(): Promise<void> {
    if (this.options.closed() || !this.options.socket.writableNeedDrain) return Promise.resolve();
    return new Promise((resolve) => {
      if (this.drainWaiters.length === 0) this.drainSince = this.options.now();
      this.drainWaiters.push(resolve);
    });
  }
}

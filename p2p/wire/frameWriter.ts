import type { Duplex } from 'node:stream';
import type { BufferPool } from '../../kit/buffers';
import { sharedPool } from '../../kit/buffers';
import type { RateLimiter } from '../bandwidth';
import type { CancelTimer, Timers } from '../timers';
import { encodePieceHeader, writePieceHeader } from './codec';
import type { PieceData, PieceRequest, RangeReader } from './connectionTypes';
import { messageIds, pieceHeaderLength } from './constants';

/** Payload bytes one read from a `RangeReader` fills: several blocks' frames at once. */
const windowPayload = 256 * 1024;

const isRangeReader = (data: PieceData): data is RangeReader =>
  typeof (data as Partial<RangeReader>).readv === 'function';

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
  /** For the delay of queued `have` frames. */
  readonly timers: Timers;
  /** Longest a queued `have` waits for another frame to ride with (ms); 0: sent at once. */
  readonly haveDelayMs: number;
};

/** `uint32 length = 5 | uint8 id = 1 | uint32 index`. */
const haveFrameLength = 9;

/**
 * The sending half of a peer connection. Control frames (a few bytes each) are written at
 * once (`have`s wait a little to ride with the next frame). A response's piece frames go out
 * after taking their egress tokens, and the next only after `drain` when `write()` returned
 * false. From a `RangeReader` the bytes are read straight into a pooled window laid out as
 * frames (header, payload, header, payload, …, up to 256 KiB of payload), and the window
 * takes one turn of the egress limiter and is one `write` of one buffer: nothing is
 * allocated per block, and a cancel takes effect at the next window. From a Buffer or a
 * Readable each block takes its own turn, header and payload corked together.
 */
export class FrameWriter {
  /** When the last frame was written (for keepalives). */
  lastSent: number;
  /** Piece payload bytes written (blocks of cancelled requests included). */
  payloadSent = 0;
  private readonly options: FrameWriterOptions;
  private drainWaiters: (() => void)[] = [];
  private drainSince = 0;
  private haves: number[] = [];
  private cancelHaveTimer: CancelTimer | undefined;

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
    if (this.haves.length > 0) {
      socket.cork();
      this.flushHaves();
      socket.write(frame);
      socket.uncork();
    } else {
      socket.write(frame);
    }
    this.lastSent = this.options.now();
  }

  /**
   * Queues a `have`: it goes out in the same write as the next frame to this peer, or after
   * `haveDelayMs` at the latest. A piece completing sends a `have` to every peer; one
   * syscall (and one wake-up of the peer) each was most of an agent's writes at 8 MiB/s.
   * Frames keep their order: queued `have`s are written before any later frame.
   */
  queueHave(index: number): void {
    if (this.options.closed()) return;
    this.haves.push(index);
    if (this.options.haveDelayMs <= 0) {
      this.sendHaves();
      return;
    }
    this.cancelHaveTimer ??= this.options.timers.after(this.options.haveDelayMs, () => {
      this.cancelHaveTimer = undefined;
      this.sendHaves();
    });
  }

  private sendHaves(): void {
    const socket = this.options.socket;
    if (this.options.closed() || socket.destroyed || !socket.writable) {
      this.stop();
      return;
    }
    this.flushHaves();
    this.lastSent = this.options.now();
  }

  /** Writes the queued `have`s as one buffer (inside the caller's cork). */
  private flushHaves(): void {
    const haves = this.haves;
    if (haves.length === 0) return;
    this.haves = [];
    this.cancelHaveTimer?.();
    this.cancelHaveTimer = undefined;
    const frames = Buffer.allocUnsafe(haves.length * haveFrameLength);
    haves.forEach((index, i) => {
      const at = i * haveFrameLength;
      frames.writeUInt32BE(5, at);
      frames.writeUInt8(messageIds.have, at + 4);
      frames.writeUInt32BE(index, at + 5);
    });
    this.options.socket.write(frames);
  }

  /** Drops queued `have`s (the connection closed). */
  stop(): void {
    this.haves = [];
    this.cancelHaveTimer?.();
    this.cancelHaveTimer = undefined;
  }

  /**
   * Sends `[request.begin, request.begin + request.length)` from `data` (a Buffer or a
   * Readable) as piece frames until it is all sent, the source ends or fails, or `stopped()`
   * says so (cancelled, closed). Returns the payload bytes sent and the source's error
   * message, if any; a Readable is destroyed either way.
   */
  async sendBlocks(
    request: PieceRequest,
    data: PieceData,
    stopped: () => boolean,
  ): Promise<{ sent: number; failure: string }> {
    if (isRangeReader(data)) return this.sendFromReader(request, data, stopped);
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

  /**
   * Sends a range read window by window into pooled frame buffers. A window goes back to
   * the pool once the socket has let go of every frame written from it.
   */
  private async sendFromReader(
    request: PieceRequest,
    reader: RangeReader,
    stopped: () => boolean,
  ): Promise<{ sent: number; failure: string }> {
    const { blockLength, egress, signal } = this.options;
    const slot = pieceHeaderLength + blockLength;
    const blocksPerWindow = Math.max(1, Math.floor(windowPayload / blockLength));
    const pool = sharedPool(slot * blocksPerWindow);
    let sent = 0;
    let failure = '';
    while (sent < request.length && !stopped()) {
      const lease = new WindowLease(pool);
      const frame = lease.buffer;
      try {
        const lengths: number[] = [];
        for (let at = sent; lengths.length < blocksPerWindow && at < request.length;) {
          const n = Math.min(blockLength, request.length - at);
          lengths.push(n);
          at += n;
        }
        const targets = lengths.map((n, b) =>
          frame.subarray(b * slot + pieceHeaderLength, b * slot + pieceHeaderLength + n),
        );
        if (!(await reader.readv(sent, targets))) {
          failure = 'source ended early';
          break;
        }
        if (stopped()) break;
        let offset = sent;
        for (const [b, n] of lengths.entries()) {
          writePieceHeader(frame, b * slot, request.index, request.begin + offset, n);
          offset += n;
        }
        // Frames of full blocks fill their slots, so the window's frames are contiguous.
        const last = lengths.length - 1;
        const whole = last * slot + pieceHeaderLength + (lengths[last] as number);
        // One turn of the egress limiter and one write for the whole window: a rate-limited
        // upload then wakes up (and wakes its peer) once per window, not once per block.
        if (egress !== undefined && !egress.tryTake(whole)) await egress.take(whole, signal);
        if (stopped()) break;
        const payload = offset - sent;
        const flushed = this.writeLeased(lease, frame.subarray(0, whole), payload);
        sent += payload;
        if (!flushed) await this.waitDrain();
      } catch (error) {
        failure = (error as Error).message;
        break;
      } finally {
        lease.done();
      }
    }
    return { sent, failure };
  }

  /** Writes frames of a pooled window; the lease counts the write until it completes. */
  private writeLeased(lease: WindowLease, frames: Buffer, payload: number): boolean {
    const socket = this.options.socket;
    if (!socket.writable) return true;
    if (this.haves.length > 0) {
      socket.cork();
      this.flushHaves();
      const flushed = lease.write(socket, frames);
      socket.uncork();
      this.lastSent = this.options.now();
      this.payloadSent += payload;
      return flushed;
    }
    const flushed = lease.write(socket, frames);
    this.lastSent = this.options.now();
    this.payloadSent += payload;
    return flushed;
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
    this.flushHaves();
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

/**
 * A pooled frame window and the socket writes still holding it: it goes back to the pool
 * when the sender is `done` with it and every write's callback has run (the socket has let
 * go of the bytes — flushed, or failed when the socket was destroyed).
 */
class WindowLease {
  readonly buffer: Buffer;
  private readonly pool: BufferPool;
  private pending = 0;
  private finished = false;

  constructor(pool: BufferPool) {
    this.pool = pool;
    this.buffer = pool.take();
  }

  write(socket: Duplex, frames: Buffer): boolean {
    this.pending += 1;
    return socket.write(frames, () => {
      this.pending -= 1;
      this.release();
    });
  }

  done(): void {
    this.finished = true;
    this.release();
  }

  private release(): void {
    if (this.finished && this.pending === 0) {
      this.finished = false;
      this.pool.give(this.buffer);
    }
  }
}

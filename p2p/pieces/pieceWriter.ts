import { createHash } from 'node:crypto';
import type { FileHandle } from 'node:fs/promises';
import { sharedPool } from '../../kit/buffers';
import { writeAll } from '../../kit/fs';
import type { PieceStoreStats } from './pieceStore';

export type PieceOutcome =
  | { readonly kind: 'stored' }
  | { readonly kind: 'bad-hash' }
  | { readonly kind: 'bad-length'; readonly received: number }
  | { readonly kind: 'aborted' }
  | { readonly kind: 'io-error'; readonly error: Error };

/**
 * Bytes of one disk write: received bytes are copied into pooled buffers of this size and
 * each full one is written with one `pwrite` (a hand-off to the thread pool each, so not per
 * socket chunk), then reused.
 */
export const stagingLength = 256 * 1024;
const staging = sharedPool(stagingLength);

/** What a writer reports to: its store's counters, a verified piece, its finished slot. */
export type PieceWriterHost = {
  readonly stats: PieceStoreStats;
  markPresent(index: number): void;
  release(writer: PieceWriter): void;
};

type Queued = { readonly buffer: Buffer; readonly length: number; readonly position: number };

/**
 * Writes one piece: hashes each chunk as it is given (in order), copies it into a pooled
 * staging buffer, writes full staging buffers in place, and on `end` checks length and hash
 * before the piece becomes present. Chunks are copied before `write` returns: the caller may
 * reuse them (a socket's read buffer). A refused piece's bytes stay in the .part file but
 * are never marked, read or announced; the next attempt overwrites them.
 */
export class PieceWriter {
  readonly index: number;
  /** The piece's length. */
  readonly size: number;
  private readonly store: PieceWriterHost;
  private readonly file: FileHandle;
  private readonly highWaterMark: number;
  /** Staged bytes that make a write: a staging buffer, or less under a small high-water mark. */
  private readonly flushAt: number;
  private readonly expected: string;
  private readonly hash = createHash('sha256');
  /** File offset of the staging buffer's first byte. */
  private position: number;
  private received_ = 0;
  private current: Buffer | undefined;
  private filled = 0;
  private queue: Queued[] = [];
  /** Bytes queued or being written (not the staging buffer being filled). */
  private queued = 0;
  /** Whether the write loop runs; it stops (synchronously) when it finds the queue empty. */
  private draining = false;
  private flushing: Promise<void> = Promise.resolve();
  private failure: Error | undefined;
  private aborted = false;
  private drainWaiters: (() => void)[] = [];
  private outcome: Promise<PieceOutcome> | undefined;

  /** @internal Use `PieceStore.beginPiece`. */
  constructor(
    store: PieceWriterHost,
    file: FileHandle,
    index: number,
    start: number,
    size: number,
    options: { highWaterMark: number; expected: string },
  ) {
    this.store = store;
    this.file = file;
    this.index = index;
    this.position = start;
    this.size = size;
    this.highWaterMark = options.highWaterMark;
    this.flushAt = Math.max(1, Math.min(stagingLength, options.highWaterMark));
    this.expected = options.expected;
  }

  /** Bytes given so far. */
  get received(): number {
    return this.received_;
  }

  /**
   * Gives the next bytes of the piece (copied at once). Returns false when the caller should
   * wait for {@link drained} before giving more (e.g. pause the connection's reading).
   */
  write(chunk: Uint8Array): boolean {
    if (this.outcome !== undefined || this.aborted) return false;
    this.take(chunk);
    return this.queued < this.highWaterMark;
  }

  /** Gives several chunks in order; as `write`. */
  writeAll(chunks: readonly Uint8Array[]): boolean {
    if (this.outcome !== undefined || this.aborted) return false;
    for (const chunk of chunks) this.take(chunk);
    return this.queued < this.highWaterMark;
  }

  /** Resolves when the queue is below the high-water mark. */
  drained(): Promise<void> {
    if (this.queued < this.highWaterMark || this.failure !== undefined || this.aborted) {
      return Promise.resolve();
    }
    return new Promise((resolve) => this.drainWaiters.push(resolve));
  }

  /** Discards the piece (e.g. its connection closed); `end` then resolves `aborted`. */
  abort(): void {
    if (this.aborted) return;
    this.aborted = true;
    for (const item of this.queue) staging.give(item.buffer);
    this.queue = [];
    this.queued = 0;
    if (this.current !== undefined) staging.give(this.current);
    this.current = undefined;
    this.wakeDrainWaiters();
  }

  /** Finishes the piece: waits for its writes, verifies it, marks it present if good. */
  end(): Promise<PieceOutcome> {
    if (this.outcome === undefined) {
      this.enqueueCurrent();
      this.outcome = this.finish();
    }
    return this.outcome;
  }

  private take(chunk: Uint8Array): void {
    const room = this.size - this.received_;
    this.received_ += chunk.length;
    // Bytes past the piece are counted (refused at `end`) but never hashed or written.
    const bytes = chunk.length > room ? chunk.subarray(0, Math.max(0, room)) : chunk;
    if (bytes.length === 0) return;
    this.hash.update(bytes);
    for (let at = 0; at < bytes.length;) {
      const current = (this.current ??= staging.take());
      const n = Math.min(bytes.length - at, this.flushAt - this.filled);
      current.set(bytes.subarray(at, at + n), this.filled);
      this.filled += n;
      at += n;
      if (this.filled >= this.flushAt) this.enqueueCurrent();
    }
  }

  /** Queues the staging buffer (however full) for writing. */
  private enqueueCurrent(): void {
    const current = this.current;
    if (current === undefined) return;
    this.current = undefined;
    if (this.filled === 0 || this.aborted) {
      staging.give(current);
      this.filled = 0;
      return;
    }
    this.queue.push({ buffer: current, length: this.filled, position: this.position });
    this.position += this.filled;
    this.queued += this.filled;
    this.filled = 0;
    if (!this.draining) {
      this.draining = true;
      this.flushing = this.drain();
    }
  }

  private async finish(): Promise<PieceOutcome> {
    // The slot is released only after the last write settled, so that a later writer of
    // the same piece cannot be overtaken by a stale write.
    while (this.draining) await this.flushing;
    this.store.release(this);
    const stats = this.store.stats;
    if (this.aborted) return { kind: 'aborted' };
    if (this.failure !== undefined) {
      stats.ioErrors += 1;
      return { kind: 'io-error', error: this.failure };
    }
    if (this.received_ !== this.size) {
      stats.rejected += 1;
      stats.rejectedBytes += this.received_;
      return { kind: 'bad-length', received: this.received_ };
    }
    if (this.hash.digest('hex') !== this.expected) {
      stats.rejected += 1;
      stats.rejectedBytes += this.received_;
      return { kind: 'bad-hash' };
    }
    this.store.markPresent(this.index);
    return { kind: 'stored' };
  }

  /**
   * The write loop: writes queued buffers in order and gives each back to the pool once its
   * write settled. It clears `draining` in the same turn it finds the queue empty, so a
   * buffer queued after that starts a new loop rather than waiting on a finished one.
   */
  private async drain(): Promise<void> {
    for (;;) {
      const item = this.queue.shift();
      if (item === undefined) {
        this.draining = false;
        if (this.failure !== undefined) this.wakeDrainWaiters();
        return;
      }
      if (this.failure === undefined && !this.aborted) {
        try {
          await writeAll(this.file, item.buffer.subarray(0, item.length), item.position);
        } catch (error) {
          this.failure = error as Error;
        }
      }
      // Given back only now: the thread pool's write has let go of it.
      staging.give(item.buffer);
      this.queued = Math.max(0, this.queued - item.length);
      if (this.queued < this.highWaterMark) this.wakeDrainWaiters();
    }
  }

  private wakeDrainWaiters(): void {
    const waiters = this.drainWaiters;
    this.drainWaiters = [];
    for (const resolve of waiters) resolve();
  }
}

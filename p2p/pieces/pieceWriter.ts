import { createHash } from 'node:crypto';
import type { FileHandle } from 'node:fs/promises';
import { writevAll } from '../../kit/fs';
import type { PieceStoreStats } from './pieceStore';

export type PieceOutcome =
  | { readonly kind: 'stored' }
  | { readonly kind: 'bad-hash' }
  | { readonly kind: 'bad-length'; readonly received: number }
  | { readonly kind: 'aborted' }
  | { readonly kind: 'io-error'; readonly error: Error };

/** Most buffers in one `writev` (below IOV_MAX). */
const maxBatch = 512;

/** What a writer reports to: its store's counters, a verified piece, its finished slot. */
export type PieceWriterHost = {
  readonly stats: PieceStoreStats;
  markPresent(index: number): void;
  release(writer: PieceWriter): void;
};

/**
 * Writes one piece: hashes each chunk as it is given (in order), queues it for an in-place
 * write, and on `end` checks length and hash before the piece becomes present. A refused
 * piece's bytes stay in the .part file but are never marked, read or announced; the next
 * attempt overwrites them.
 */
export class PieceWriter {
  readonly index: number;
  /** The piece's length. */
  readonly size: number;
  private readonly store: PieceWriterHost;
  private readonly file: FileHandle;
  private readonly highWaterMark: number;
  private readonly expected: string;
  private readonly hash = createHash('sha256');
  private position: number;
  private received_ = 0;
  private queue: Uint8Array[] = [];
  private queued = 0;
  private flushing: Promise<void> | undefined;
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
    this.expected = options.expected;
  }

  /** Bytes given so far. */
  get received(): number {
    return this.received_;
  }

  /**
   * Gives the next bytes of the piece. Returns false when the caller should wait for
   * {@link drained} before giving more (e.g. pause the connection's reading).
   */
  write(chunk: Uint8Array): boolean {
    return this.writeAll([chunk]);
  }

  /** Gives several chunks at once: queued together, so they go out in one `writev`. */
  writeAll(chunks: readonly Uint8Array[]): boolean {
    if (this.outcome !== undefined || this.aborted) return false;
    for (const chunk of chunks) {
      this.received_ += chunk.length;
      if (this.received_ > this.size) break; // refused at `end`; never written past the piece
      this.hash.update(chunk);
      this.queue.push(chunk);
      this.queued += chunk.length;
    }
    this.flush();
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
    this.aborted = true;
    this.queue = [];
    this.queued = 0;
    this.wakeDrainWaiters();
  }

  /** Finishes the piece: waits for its writes, verifies it, marks it present if good. */
  end(): Promise<PieceOutcome> {
    this.outcome ??= this.finish();
    return this.outcome;
  }

  private async finish(): Promise<PieceOutcome> {
    // The slot is released only after the last write settled, so that a later writer of
    // the same piece cannot be overtaken by a stale write.
    while (this.flushing !== undefined) await this.flushing;
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

  private flush(): void {
    if (this.flushing !== undefined) return;
    this.flushing = this.drain().finally(() => (this.flushing = undefined));
  }

  private async drain(): Promise<void> {
    while (this.queue.length > 0 && !this.aborted && this.failure === undefined) {
      const batch = this.queue.splice(0, maxBatch);
      const bytes = batch.reduce((sum, chunk) => sum + chunk.length, 0);
      try {
        await writevAll(this.file, batch, this.position);
      } catch (error) {
        this.failure = error as Error;
      }
      this.position += bytes;
      this.queued -= bytes;
      if (this.queued < this.highWaterMark) this.wakeDrainWaiters();
    }
    if (this.failure !== undefined) this.wakeDrainWaiters();
  }

  private wakeDrainWaiters(): void {
    const waiters = this.drainWaiters;
    this.drainWaiters = [];
    for (const resolve of waiters) resolve();
  }
}

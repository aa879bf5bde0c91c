/**
 * Fixed-size buffers reused instead of allocated per chunk. Every buffer Node allocates for
 * a socket read or a file read is external memory to V8, and external memory allocated at
 * tens of MB/s makes V8 run a full mark-compact of the heap every second or so: in the swarm
 * benchmark that was a fifth of an agent's CPU. A pool keeps the bytes in flight in the same
 * few buffers.
 *
 * Contract: `take` hands out a buffer nobody else holds; its contents are garbage. The taker
 * gives it back with `give` once nothing refers to it any more — after the socket write or
 * file operation using it has completed, never before (a write still queued in the kernel or
 * the thread pool would send the next user's bytes). Giving a buffer twice, or giving one of
 * another size, is a bug and throws. Buffers given back beyond `maxFree` are dropped.
 */
export class BufferPool {
  readonly size: number;
  private readonly maxFree: number;
  private readonly free: Buffer[] = [];
  private readonly out = new WeakSet<Buffer>();
  private taken_ = 0;
  private allocated_ = 0;

  constructor(size: number, options: { maxFree?: number } = {}) {
    if (!Number.isInteger(size) || size < 1) throw new RangeError('pool buffer size');
    this.size = size;
    this.maxFree = options.maxFree ?? Math.max(4, Math.floor((32 * 1024 * 1024) / size));
  }

  /** Buffers handed out and not given back. */
  get taken(): number {
    return this.taken_;
  }

  /** Buffers this pool ever allocated (a measure of its peak, for tests and metrics). */
  get allocated(): number {
    return this.allocated_;
  }

  take(): Buffer {
    let buffer = this.free.pop();
    if (buffer === undefined) {
      // Not from Node's shared 8 KiB slab: the whole ArrayBuffer is this buffer.
      buffer = Buffer.allocUnsafeSlow(this.size);
      this.allocated_ += 1;
    }
    this.out.add(buffer);
    this.taken_ += 1;
    return buffer;
  }

  give(buffer: Buffer): void {
    if (!this.out.delete(buffer)) throw new Error('BufferPool: not a buffer of this pool');
    this.taken_ -= 1;
    if (this.free.length < this.maxFree) this.free.push(buffer);
  }
}

const shared = new Map<number, BufferPool>();

/** The process-wide pool of buffers of `size` bytes. */
export const sharedPool = (size: number): BufferPool => {
  let pool = shared.get(size);
  if (pool === undefined) shared.set(size, (pool = new BufferPool(size)));
  return pool;
};

/**
 * What a connection needs from a bandwidth limit: take tokens (bytes) before sending, or
 * after receiving, a chunk.
 */
export interface RateLimiter {
  /** Bytes per second; 0 means unlimited. */
  readonly rate: number;
  /**
   * Takes `bytes` now if that needs no waiting and nobody is queued; returns whether it did.
   * The fast path: no promise, no timer.
   */
  tryTake(bytes: number): boolean;
  /**
   * Resolves once `bytes` are granted. Waiters are served first come, first served, each in
   * full, so callers that take one block at a time (and wait for it) share the rate in
   * turns. Rejects with the signal's reason if the signal aborts first; the bytes are then
   * not taken.
   */
  take(bytes: number, signal?: AbortSignal): Promise<void>;
  /**
   * Charges bytes already taken in (a socket read): granted at once, into debt if need be,
   * ahead of any queued waiter. Returns 0 while the limiter is not in debt, else how long
   * (ms) until it holds `resumeAt` tokens (at most the burst) again: how long a reader should
   * pause so that it reads on in bursts of about `resumeAt` bytes.
   */
  debit(bytes: number, resumeAt: number): number;
  /** Bytes granted so far. */
  readonly granted: number;
}

export type TokenBucketOptions = {
  /** Bytes per second; 0 (or less) means unlimited. */
  readonly rate: number;
  /**
   * Most tokens that accumulate while idle, i.e. the largest burst. Default: a tenth of a
   * second of the rate, at least 512 KiB (two maximal wire blocks): small enough that a
   * measured rate over a couple of seconds stays within a few percent of the configured one,
   * large enough that a timer firing tens of milliseconds late loses no throughput.
   */
  readonly burst?: number;
  /** Milliseconds, monotonic. Default `performance.now`. */
  readonly now?: () => number;
};

export const defaultBurstOf = (rate: number): number => Math.max(512 * 1024, Math.ceil(rate / 10));

type Waiter = {
  readonly bytes: number;
  readonly resolve: () => void;
  readonly reject: (reason: unknown) => void;
  readonly signal: AbortSignal | undefined;
  readonly onAbort: () => void;
};

const granted = Promise.resolve();

/**
 * A token bucket with continuous refill and a FIFO queue of waiters. Refill is computed from
 * elapsed time, not from timer ticks, so late timers do not lose tokens (up to the burst).
 * A request larger than the burst is granted once the bucket is full and drives it negative,
 * which delays the next waiters by as much: the long-run rate stays exact.
 *
 * Fairness: the queue is strictly FIFO. A connection waits for one block (≤ 256 KiB) at a
 * time and queues again after sending it, so with several connections waiting they are
 * served in turns, block by block, whatever their request sizes: none can starve another.
 */
export class TokenBucket implements RateLimiter {
  private rate_: number;
  private burst_: number;
  private readonly now: () => number;
  private tokens: number;
  private last: number;
  private readonly queue: Waiter[] = [];
  private head = 0;
  private timer: NodeJS.Timeout | undefined;
  private granted_ = 0;

  constructor(options: TokenBucketOptions) {
    this.now = options.now ?? (() => performance.now());
    this.rate_ = Math.max(0, options.rate);
    this.burst_ = options.burst ?? defaultBurstOf(this.rate_);
    this.tokens = this.burst_;
    this.last = this.now();
  }

  get rate(): number {
    return this.rate_;
  }

  get burst(): number {
    return this.burst_;
  }

  get granted(): number {
    return this.granted_;
  }

  /** Waiters queued. */
  get waiting(): number {
    return this.queue.length - this.head;
  }

  /** Changes the rate (and burst) in place; queued waiters are re-timed. 0 = unlimited. */
  configure(options: { rate: number; burst?: number }): void {
    this.refill();
    this.rate_ = Math.max(0, options.rate);
    this.burst_ = options.burst ?? defaultBurstOf(this.rate_);
    this.tokens = Math.min(this.tokens, this.burst_);
    this.pump();
  }

  tryTake(bytes: number): boolean {
    if (this.rate_ === 0) {
      this.granted_ += bytes;
      return true;
    }
    if (this.waiting > 0) return false;
    this.refill();
    if (this.tokens < Math.min(bytes, this.burst_)) return false;
    this.tokens -= bytes;
    this.granted_ += bytes;
    return true;
  }

  debit(bytes: number, resumeAt: number): number {
    this.granted_ += bytes;
    if (this.rate_ === 0) return 0;
    this.refill();
    this.tokens -= bytes;
    if (this.tokens >= 0) return 0;
    const target = Math.min(resumeAt, this.burst_);
    return Math.max(1, Math.ceil(((target - this.tokens) * 1000) / this.rate_));
  }

  take(bytes: number, signal?: AbortSignal): Promise<void> {
    if (signal?.aborted) return Promise.reject(signal.reason);
    if (this.tryTake(bytes)) return granted;
    return new Promise<void>((resolve, reject) => {
      const waiter: Waiter = {
        bytes,
        resolve,
        reject,
        signal,
        onAbort: () => this.abort(waiter),
      };
      signal?.addEventListener('abort', waiter.onAbort, { once: true });
      this.queue.push(waiter);
      this.pump();
    });
  }

  private refill(): void {
    const now = this.now();
    const elapsed = now - this.last;
    this.last = now;
    if (elapsed > 0)
      this.tokens = Math.min(this.burst_, this.tokens + (elapsed * this.rate_) / 1000);
  }

  private pump(): void {
    if (this.timer !== undefined) {
      clearTimeout(this.timer);
      this.timer = undefined;
    }
    this.refill();
    while (this.waiting > 0) {
      const waiter = this.queue[this.head] as Waiter;
      if (this.rate_ !== 0 && this.tokens < Math.min(waiter.bytes, this.burst_)) break;
      this.shift();
      if (this.rate_ !== 0) this.tokens -= waiter.bytes;
      this.granted_ += waiter.bytes;
      waiter.signal?.removeEventListener('abort', waiter.onAbort);
      waiter.resolve();
    }
    const next = this.queue[this.head];
    if (next === undefined) return;
    const deficit = Math.min(next.bytes, this.burst_) - this.tokens;
    const delay = Math.max(1, Math.ceil((deficit * 1000) / this.rate_));
    this.timer = setTimeout(() => {
      this.timer = undefined;
      this.pump();
    }, delay);
  }

  private shift(): void {
    this.head += 1;
    if (this.head > 64 && this.head * 2 > this.queue.length) {
      this.queue.splice(0, this.head);
      this.head = 0;
    }
  }

  private abort(waiter: Waiter): void {
    const at = this.queue.indexOf(waiter, this.head);
    if (at < 0) return;
    this.queue.splice(at, 1);
    waiter.reject(waiter.signal?.reason);
    // The head may have changed: the next waiter may fit now.
    if (at === this.head) this.pump();
  }
}

import { KeyedMinHeap } from '../../kit/collections';
import type { CancelTimer, Timers } from '../../p2p/timers';

/** Something a message can be delivered to without a closure (the hot path: haves, blocks). */
export interface Recipient {
  deliver(kind: number, a: number, b: number): void;
}

/** One instant's events, in order: closures, or messages for recipients. */
class Bucket {
  readonly runs: Array<(() => void) | undefined> = [];
  readonly to: Array<Recipient | undefined> = [];
  readonly kinds: number[] = [];
  readonly as: number[] = [];
  readonly bs: number[] = [];

  get size(): number {
    return this.runs.length;
  }

  run(): void {
    const { runs, to, kinds, as, bs } = this;
    for (let i = 0; i < runs.length; i += 1) {
      const fn = runs[i];
      if (fn !== undefined) fn();
      else (to[i] as Recipient).deliver(kinds[i] as number, as[i] as number, bs[i] as number);
    }
  }
}

/**
 * The simulator's clock and event calendar. Time is in milliseconds on a grid of `gridMs`
 * (every event lands on a grid instant, never earlier than asked); events of one instant run
 * in the order they were scheduled. After each instant the engine lets the microtask queue
 * drain (the product code reports asynchronous work through promises: a piece writer's
 * `end()`, a handshake, an upload), so continuations run at the instant that caused them,
 * before time moves on. Nothing here reads the wall clock.
 */
export class SimEngine {
  readonly gridMs: number;
  /** Events run so far (timers, messages, network steps). */
  events = 0;
  /** Distinct instants run so far. */
  instants = 0;
  private tick = 0;
  private readonly buckets = new Map<number, Bucket>();
  /** Ticks that have a bucket (each once). */
  private readonly heap = new KeyedMinHeap<number>();
  private stopped = false;

  constructor(options: { gridMs?: number } = {}) {
    this.gridMs = options.gridMs ?? 0.01;
  }

  /** Simulated milliseconds since the start. */
  get now(): number {
    return this.tick * this.gridMs;
  }

  /** Runs `run` at `atMs` (on the grid, never before the current instant). */
  at(atMs: number, run: () => void): void {
    const bucket = this.bucketAt(atMs);
    bucket.runs.push(run);
    bucket.to.push(undefined);
    bucket.kinds.push(0);
    bucket.as.push(0);
    bucket.bs.push(0);
  }

  /** Delivers a message to `to` `ms` from now (`to.deliver(kind, a, b)`). */
  send(ms: number, to: Recipient, kind: number, a: number, b: number): void {
    const bucket = this.bucketAt(this.now + ms);
    bucket.runs.push(undefined);
    bucket.to.push(to);
    bucket.kinds.push(kind);
    bucket.as.push(a);
    bucket.bs.push(b);
  }

  private bucketAt(atMs: number): Bucket {
    const tick = Math.max(this.tick, Math.ceil(atMs / this.gridMs - 1e-6));
    let bucket = this.buckets.get(tick);
    if (bucket === undefined) {
      bucket = new Bucket();
      this.buckets.set(tick, bucket);
      this.heap.push(tick, tick);
    }
    return bucket;
  }

  /** Runs `run` `ms` from now. */
  after(ms: number, run: () => void): void {
    this.at(this.now + ms, run);
  }

  /** Timers for the product code: `now`, one-shot and periodic timers on this calendar. */
  timers(alive: () => boolean = () => true): Timers {
    const engine: SimEngine = this as SimEngine;
    return {
      now: () => engine.now,
      after(ms: number, run: () => void): CancelTimer {
        let live = true;
        engine.after(Math.max(0, ms), () => {
          if (live && alive()) {
            live = false;
            run();
          }
        });
        return () => {
          live = false;
        };
      },
      every(ms: number, run: () => void): CancelTimer {
        let live = true;
        const period = Math.max(engine.gridMs, ms);
        const fire = () => {
          if (!live || !alive()) return;
          engine.after(period, fire);
          run();
        };
        engine.after(period, fire);
        return () => {
          live = false;
        };
      },
    };
  }

  /** Stops `run` after the current instant. */
  stop(): void {
    this.stopped = true;
  }

  /**
   * Runs instants in time order until nothing is scheduled, `untilMs` is passed, `stop()` is
   * called or `done()` answers true (checked after each instant).
   */
  async run(options: { untilMs?: number; done?: () => boolean } = {}): Promise<void> {
    const endTick =
      options.untilMs === undefined ? Infinity : Math.floor(options.untilMs / this.gridMs);
    this.stopped = false;
    while (!this.stopped && this.heap.size > 0) {
      const tick = this.heap.pop() as number;
      const first = this.buckets.get(tick);
      if (first === undefined) continue;
      if (tick > endTick) {
        this.heap.push(tick, tick);
        break;
      }
      this.tick = tick;
      this.instants += 1;
      for (let bucket: Bucket | undefined = first; bucket !== undefined;) {
        this.buckets.delete(tick);
        bucket.run();
        this.events += bucket.size;
        await drainMicrotasks();
        bucket = this.buckets.get(tick);
      }
      if (options.done?.() === true) break;
    }
  }
}

/** Resolves after every queued microtask (and the ones they queue) has run. */
const drainMicrotasks = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));

import { KeyedMinHeap } from '../../kit/collections';
import type { Recipient, SimEngine } from './engine';

/*
 * The network model: a hose per host (an upload and a download capacity, the agents' token
 * buckets), optional zones whose traffic to other zones shares one uplink and one downlink,
 * and a one-way latency per pair of hosts. Data moves in streams — one per connection and
 * direction, carrying that connection's responses one after another as the wire does — whose
 * rates are the max-min fair allocation over the capacities (TCP's fair share between a
 * host's connections, and a work-conserving token bucket). Rates are recomputed for every
 * stream each `stepMs`; between steps a stream keeps its rate across the pieces it sends, a
 * stream that becomes busy takes what its hosts have free, and a piece ends at its exact
 * time. A response reaches the receiver as blocks: the last at its end, and one every
 * `blockEveryMs` before that when it takes longer.
 *
 * Streams live in typed arrays (a slot each): a step touches every busy stream of the
 * fleet, and objects scattered in memory made it the simulator's bottleneck.
 */

export type NetworkOptions = {
  /** Period of the global max-min recomputation (ms). */
  readonly stepMs: number;
  /** Least time between two blocks of one response (ms). */
  readonly blockEveryMs: number;
  /** One-way latency within a zone and between zones (ms). */
  readonly latencyMs: number;
  readonly interZoneLatencyMs: number;
  /** Per zone: bytes/s its traffic to (up) and from (down) other zones may use; 0: no cap. */
  readonly zoneUp?: readonly number[];
  readonly zoneDown?: readonly number[];
  /**
   * Bytes of a connection's send buffer (the kernel's socket buffers): a response counts as
   * sent (its upload slot is free) once no more than this is left to deliver; the rest
   * still reaches the peer at the stream's rate, before the next response. 0: none.
   */
  readonly sendBufferBytes?: number;
  /** Exact progressive filling, or `passes` rounds of the iterative approximation. */
  readonly allocation: 'exact' | 'iterative';
  readonly passes: number;
};

/** One answer to send on a stream. */
export interface Response {
  readonly length: number;
  /** Bytes left the sender (the receiver gets them a latency later). */
  onBlock(bytes: number, done: boolean): void;
  /**
   * The sender is done with the response: all of it written (its tail may still be in the
   * send buffer), or stopped (cancelled, closed). Called once.
   */
  onDone(sent: boolean): void;
}

/** One direction of a connection: the responses it carries, in order. */
export class Stream {
  readonly slot: number;
  readonly src: number;
  readonly dst: number;
  readonly queue: Response[] = [];
  /** Whether the head's `onDone` was called. */
  released = false;
  closed = false;

  constructor(slot: number, src: number, dst: number) {
    this.slot = slot;
    this.src = src;
    this.dst = dst;
  }
}

export type HostLink = {
  /** Bytes per second. */
  readonly up: number;
  readonly down: number;
  readonly zone: number;
  /** Token bucket bursts (bytes): what a host may send or receive above its rate after idling. */
  readonly burstUp: number;
  readonly burstDown: number;
};

/** Events of a stream's head (`Network.deliver`). */
const RELEASE = 1;
const END = 2;

export class Network implements Recipient {
  readonly options: NetworkOptions;
  private readonly engine: SimEngine;
  private readonly hostCount: number;
  private readonly zoneCount: number;
  /** Per resource (hosts' up, hosts' down, zones' up, zones' down), bytes per ms. */
  private readonly cap: Float64Array;
  private readonly load: Float64Array;
  /** Token buckets per resource: tokens now, the most they hold, bytes used since the step. */
  private readonly tokens: Float64Array;
  private readonly burst: Float64Array;
  private readonly used: Float64Array;
  private readonly capNow: Float64Array;
  private readonly zones: Int32Array;
  // Streams, by slot.
  private slots = 0;
  private objects: Array<Stream | undefined> = [];
  private freeSlots: number[] = [];
  private rate = new Float64Array(0);
  private lastAt = new Float64Array(0);
  /** The head response: its length, bytes sent, bytes handed over as blocks, when last. */
  private length = new Float64Array(0);
  private sent = new Float64Array(0);
  private emitted = new Float64Array(0);
  private lastEmit = new Float64Array(0);
  private version = new Int32Array(0);
  /** Resources of each stream: its sender's up, its receiver's down, zone links or −1. */
  private ra = new Int32Array(0);
  private rb = new Int32Array(0);
  private rc = new Int32Array(0);
  private rd = new Int32Array(0);
  private activeAt = new Int32Array(0);
  private active = new Int32Array(1024);
  private activeCount = 0;
  private stepping = false;
  private lastStepAt = 0;
  private refilledAt = 0;
  private readonly allocator = new IterativeMaxMin();
  private readonly exact = new ProgressiveFilling();
  /** Bytes sent and received per host (payload, whole pieces or not). */
  readonly sentBy: Float64Array;
  readonly receivedBy: Float64Array;
  /** Bytes sent across zones, and in all. */
  interZoneBytes = 0;
  totalBytes = 0;
  steps = 0;
  peakStreams = 0;

  constructor(engine: SimEngine, hosts: readonly HostLink[], options: NetworkOptions) {
    this.engine = engine;
    this.options = options;
    this.hostCount = hosts.length;
    const zoneCount = Math.max(1, ...hosts.map((h) => h.zone + 1));
    this.zoneCount = zoneCount;
    const size = 2 * hosts.length + 2 * zoneCount;
    this.cap = new Float64Array(size);
    this.load = new Float64Array(size);
    this.tokens = new Float64Array(size);
    this.burst = new Float64Array(size);
    this.used = new Float64Array(size);
    this.capNow = new Float64Array(size);
    this.zones = new Int32Array(hosts.length);
    this.sentBy = new Float64Array(hosts.length);
    this.receivedBy = new Float64Array(hosts.length);
    hosts.forEach((host, i) => {
      this.cap[i] = host.up / 1000;
      this.cap[hosts.length + i] = host.down / 1000;
      this.burst[i] = host.burstUp;
      this.burst[hosts.length + i] = host.burstDown;
      this.zones[i] = host.zone;
    });
    for (let z = 0; z < zoneCount; z += 1) {
      const up = options.zoneUp?.[z] ?? 0;
      const down = options.zoneDown?.[z] ?? 0;
      this.cap[2 * hosts.length + z] = up > 0 ? up / 1000 : Infinity;
      this.cap[2 * hosts.length + zoneCount + z] = down > 0 ? down / 1000 : Infinity;
    }
    // Buckets start full, as the agents' do.
    this.tokens.set(this.burst);
    this.capNow.set(this.cap);
    this.grow(1024);
  }

  zoneOf(host: number): number {
    return this.zones[host] ?? 0;
  }

  latency(a: number, b: number): number {
    return this.zoneOf(a) === this.zoneOf(b)
      ? this.options.latencyMs
      : this.options.interZoneLatencyMs;
  }

  /** A stream from `src` to `dst` (one direction of a connection). */
  stream(src: number, dst: number): Stream {
    const slot = this.freeSlots.pop() ?? this.newSlot();
    const zs = this.zoneOf(src);
    const zd = this.zoneOf(dst);
    const h = this.hostCount;
    this.ra[slot] = src;
    this.rb[slot] = h + dst;
    this.rc[slot] = zs === zd ? -1 : 2 * h + zs;
    this.rd[slot] = zs === zd ? -1 : 2 * h + this.zoneCount + zd;
    this.rate[slot] = 0;
    this.activeAt[slot] = -1;
    this.version[slot] = (this.version[slot] as number) + 1;
    const stream = new Stream(slot, src, dst);
    this.objects[slot] = stream;
    return stream;
  }

  /** Queues a response on a stream; it starts when the ones before it are sent. */
  send(stream: Stream, response: Response): void {
    if (stream.closed) {
      response.onDone(false);
      return;
    }
    stream.queue.push(response);
    if (stream.queue.length === 1) {
      this.startHead(stream);
      this.activate(stream.slot);
    }
  }

  /** Stops a response (cancelled): bytes sent so far are handed over, the rest never sent. */
  stop(stream: Stream, response: Response): void {
    const at = stream.queue.indexOf(response);
    if (at < 0) return;
    if (at > 0) {
      stream.queue.splice(at, 1);
      response.onDone(false);
      return;
    }
    if (stream.released) return;
    const slot = stream.slot;
    this.advance(slot, this.engine.now);
    if ((this.sent[slot] as number) > (this.emitted[slot] as number)) this.emit(stream, false);
    stream.queue.shift();
    stream.released = true;
    response.onDone(false);
    this.next(stream);
  }

  /** The connection closed: every queued response ends unsent; the stream is gone. */
  close(stream: Stream): void {
    if (stream.closed) return;
    stream.closed = true;
    const slot = stream.slot;
    if (stream.queue.length > 0) this.advance(slot, this.engine.now);
    this.deactivate(slot);
    const queue = stream.queue.splice(0);
    if (queue.length > 0 && stream.released) queue.shift();
    for (const response of queue) response.onDone(false);
    this.objects[slot] = undefined;
    this.version[slot] = (this.version[slot] as number) + 1;
    this.freeSlots.push(slot);
  }

  // --- slots ------------------------------------------------------------------------------------

  private newSlot(): number {
    if (this.slots === this.rate.length) this.grow(this.rate.length * 2);
    const slot = this.slots;
    this.slots += 1;
    return slot;
  }

  private grow(size: number): void {
    const f64 = (old: Float64Array) => {
      const next = new Float64Array(size);
      next.set(old);
      return next;
    };
    const i32 = (old: Int32Array) => {
      const next = new Int32Array(size);
      next.set(old);
      return next;
    };
    this.rate = f64(this.rate);
    this.lastAt = f64(this.lastAt);
    this.length = f64(this.length);
    this.sent = f64(this.sent);
    this.emitted = f64(this.emitted);
    this.lastEmit = f64(this.lastEmit);
    this.version = i32(this.version);
    this.ra = i32(this.ra);
    this.rb = i32(this.rb);
    this.rc = i32(this.rc);
    this.rd = i32(this.rd);
    this.activeAt = i32(this.activeAt);
  }

  private startHead(stream: Stream): void {
    const slot = stream.slot;
    const head = stream.queue[0] as Response;
    const now = this.engine.now;
    this.length[slot] = head.length;
    this.sent[slot] = 0;
    this.emitted[slot] = 0;
    this.lastEmit[slot] = now;
    this.lastAt[slot] = now;
    stream.released = false;
  }

  private activate(slot: number): void {
    if ((this.activeAt[slot] as number) >= 0) return;
    if (this.activeCount === this.active.length) {
      const next = new Int32Array(this.active.length * 2);
      next.set(this.active);
      this.active = next;
    }
    this.activeAt[slot] = this.activeCount;
    this.active[this.activeCount] = slot;
    this.activeCount += 1;
    this.peakStreams = Math.max(this.peakStreams, this.activeCount);
    // Until the next step, what its hosts have free.
    let free = Infinity;
    this.forResources(slot, (r) => {
      free = Math.min(free, (this.capNow[r] as number) - (this.load[r] as number));
    });
    this.setRate(slot, Math.max(0, free * 0.999999));
    this.scheduleHead(slot);
    if (!this.stepping) {
      this.stepping = true;
      this.lastStepAt = this.engine.now;
      this.engine.after(0, () => this.step());
    }
  }

  private deactivate(slot: number): void {
    this.setRate(slot, 0);
    this.version[slot] = (this.version[slot] as number) + 1;
    const at = this.activeAt[slot] as number;
    if (at < 0) return;
    this.activeCount -= 1;
    const last = this.active[this.activeCount] as number;
    if (last !== slot) {
      this.active[at] = last;
      this.activeAt[last] = at;
    }
    this.activeAt[slot] = -1;
  }

  private forResources(slot: number, visit: (r: number) => void): void {
    visit(this.ra[slot] as number);
    visit(this.rb[slot] as number);
    const rc = this.rc[slot] as number;
    if (rc >= 0) {
      visit(rc);
      visit(this.rd[slot] as number);
    }
  }

  private setRate(slot: number, rate: number): void {
    const delta = rate - (this.rate[slot] as number);
    if (delta === 0) return;
    const load = this.load;
    load[this.ra[slot] as number] = (load[this.ra[slot] as number] as number) + delta;
    load[this.rb[slot] as number] = (load[this.rb[slot] as number] as number) + delta;
    const rc = this.rc[slot] as number;
    if (rc >= 0) {
      load[rc] = (load[rc] as number) + delta;
      load[this.rd[slot] as number] = (load[this.rd[slot] as number] as number) + delta;
    }
    this.rate[slot] = rate;
  }

  // --- moving bytes -----------------------------------------------------------------------------

  private advance(slot: number, now: number): void {
    const rate = this.rate[slot] as number;
    const last = this.lastAt[slot] as number;
    this.lastAt[slot] = now;
    if (rate <= 0 || now <= last) return;
    const left = (this.length[slot] as number) - (this.sent[slot] as number);
    const bytes = Math.min(left, rate * (now - last));
    if (bytes > 0) this.carry(slot, bytes);
  }

  private carry(slot: number, bytes: number): void {
    this.sent[slot] = (this.sent[slot] as number) + bytes;
    this.totalBytes += bytes;
    const src = this.ra[slot] as number;
    const dstR = this.rb[slot] as number;
    this.sentBy[src] = (this.sentBy[src] as number) + bytes;
    this.receivedBy[dstR - this.hostCount] =
      (this.receivedBy[dstR - this.hostCount] as number) + bytes;
    const used = this.used;
    used[src] = (used[src] as number) + bytes;
    used[dstR] = (used[dstR] as number) + bytes;
    const rc = this.rc[slot] as number;
    if (rc >= 0) {
      this.interZoneBytes += bytes;
      used[rc] = (used[rc] as number) + bytes;
      const rd = this.rd[slot] as number;
      used[rd] = (used[rd] as number) + bytes;
    }
  }

  private emit(stream: Stream, done: boolean): void {
    const slot = stream.slot;
    const bytes = (this.sent[slot] as number) - (this.emitted[slot] as number);
    this.emitted[slot] = this.sent[slot] as number;
    this.lastEmit[slot] = this.engine.now;
    (stream.queue[0] as Response).onBlock(bytes, done);
  }

  /**
   * Schedules the head's release (its tail fits the send buffer) and its end, when they fall
   * before the next step.
   */
  private scheduleHead(slot: number): void {
    // Whatever was scheduled for this head assumed the old rate.
    const version = (this.version[slot] = (this.version[slot] as number) + 1);
    const stream = this.objects[slot] as Stream;
    if (stream.queue.length === 0) return;
    const buffer = this.options.sendBufferBytes ?? 0;
    const length = this.length[slot] as number;
    const sent = this.sent[slot] as number;
    if (!stream.released && length - sent <= buffer) this.release(stream);
    const rate = this.rate[slot] as number;
    if (rate <= 0) return;
    const horizon = this.lastStepAt + this.options.stepMs;
    const lastAt = this.lastAt[slot] as number;
    const end = lastAt + (length - sent) / rate;
    const releaseAt = stream.released ? Infinity : lastAt + (length - buffer - sent) / rate;
    if (end > horizon && releaseAt > horizon) return;
    const now = this.engine.now;
    if (releaseAt <= horizon && releaseAt < end) {
      this.engine.send(releaseAt - now, this, RELEASE, slot, version);
      return;
    }
    if (end <= horizon) this.engine.send(end - now, this, END, slot, version);
  }

  /** The head's release or end, as scheduled for `version` of the slot (else stale). */
  deliver(kind: number, slot: number, version: number): void {
    if (this.version[slot] !== version) return;
    const stream = this.objects[slot] as Stream;
    if (kind === END) {
      this.finish(stream);
      return;
    }
    this.advance(slot, this.engine.now);
    this.release(stream);
    this.scheduleHead(slot);
  }

  private release(stream: Stream): void {
    if (stream.released) return;
    stream.released = true;
    (stream.queue[0] as Response).onDone(true);
  }

  private finish(stream: Stream): void {
    const slot = stream.slot;
    this.advance(slot, this.engine.now);
    const rest = (this.length[slot] as number) - (this.sent[slot] as number);
    if (rest > 0) this.carry(slot, rest);
    this.emit(stream, true);
    const head = stream.queue.shift() as Response;
    if (!stream.released) head.onDone(true);
    stream.released = false;
    this.next(stream);
  }

  /** The head ended: the next response goes on at the stream's rate, or the stream idles. */
  private next(stream: Stream): void {
    const slot = stream.slot;
    if (stream.queue.length === 0) {
      stream.released = false;
      this.deactivate(slot);
      return;
    }
    this.startHead(stream);
    if ((this.activeAt[slot] as number) < 0) this.activate(slot);
    else this.scheduleHead(slot);
  }

  // --- the step ---------------------------------------------------------------------------------

  private step(): void {
    const now = this.engine.now;
    this.steps += 1;
    if (this.activeCount === 0) {
      this.stepping = false;
      return;
    }
    this.lastStepAt = now;
    const every = this.options.blockEveryMs;
    const { active, rate, length, sent, emitted, lastEmit } = this;
    const n = this.activeCount;
    for (let i = 0; i < n; i += 1) {
      const slot = active[i] as number;
      this.advance(slot, now);
      const s = sent[slot] as number;
      const e = emitted[slot] as number;
      if (s <= e) continue;
      // A block when the response is long: now if none went yet, then every `every` ms.
      const r = rate[slot] as number;
      const longer = e === 0 ? ((length[slot] as number) - s) / r >= every : false;
      if (longer || (e > 0 && now - (lastEmit[slot] as number) >= every)) {
        this.emit(this.objects[slot] as Stream, false);
      }
    }
    this.refill(now);
    this.allocate();
    for (let i = 0; i < this.activeCount; i += 1) this.scheduleHead(this.active[i] as number);
    this.engine.after(this.options.stepMs, () => this.step());
  }

  /**
   * Token buckets: each resource earned its rate since the last step and spent what it
   * carried; until the next step it may carry its rate plus the tokens it holds (so a host
   * that idled catches up by its burst, as the agents' buckets let it).
   */
  private refill(now: number): void {
    const elapsed = now - this.refilledAt;
    this.refilledAt = now;
    const step = this.options.stepMs;
    const { cap, burst, tokens, used, capNow } = this;
    for (let r = 0; r < cap.length; r += 1) {
      const c = cap[r] as number;
      const b = burst[r] as number;
      if (b > 0) {
        const t = Math.min(b, (tokens[r] as number) + c * elapsed - (used[r] as number));
        tokens[r] = t;
        capNow[r] = c + Math.max(0, t) / step;
      } else capNow[r] = c;
    }
    used.fill(0);
  }

  /** Max-min fair rates for the busy streams. */
  private allocate(): void {
    const n = this.activeCount;
    const flows: Flows = {
      count: n,
      slots: this.active,
      a: this.ra,
      b: this.rb,
      c: this.rc,
      d: this.rd,
    };
    const rates =
      this.options.allocation === 'exact'
        ? this.exact.allocate(this.capNow, flows)
        : this.allocator.allocate(this.capNow, flows, this.options.passes);
    this.load.fill(0);
    for (let i = 0; i < n; i += 1) {
      const slot = this.active[i] as number;
      this.rate[slot] = 0;
      this.setRate(slot, rates[i] as number);
    }
  }
}

/** Flows for the solvers: `count` slots, each with two or four resources (c, d: −1 if none). */
export type Flows = {
  readonly count: number;
  readonly slots: Int32Array;
  readonly a: Int32Array;
  readonly b: Int32Array;
  readonly c: Int32Array;
  readonly d: Int32Array;
};

const resourcesOf = (flows: Flows, i: number): number[] => {
  const slot = flows.slots[i] as number;
  const rc = flows.c[slot] as number;
  const out = [flows.a[slot] as number, flows.b[slot] as number];
  if (rc >= 0) out.push(rc, flows.d[slot] as number);
  return out;
};

/**
 * Max-min fairness by progressive filling, exactly: repeatedly the resource whose fair level
 * (remaining capacity ÷ flows not yet fixed) is lowest fixes its flows at that level, and
 * their other resources lose what they took. A heap of levels (stale entries skipped) and
 * flat per-resource flow lists: O((flows + resources) · log resources) per allocation.
 */
export class ProgressiveFilling {
  private rates = new Float64Array(0);
  private fixed = new Uint8Array(0);
  private remaining = new Float64Array(0);
  private unfixed = new Int32Array(0);
  private start = new Int32Array(0);
  private fill = new Int32Array(0);
  private members = new Int32Array(0);
  /** (level, resource); stale entries are skipped. */
  private readonly heap = new KeyedMinHeap<number>();

  allocate(cap: Float64Array, flows: Flows): Float64Array {
    const n = flows.count;
    const resources = cap.length;
    if (n > this.rates.length) {
      const size = Math.max(n, 2 * this.rates.length);
      this.rates = new Float64Array(size);
      this.fixed = new Uint8Array(size);
      this.members = new Int32Array(4 * size);
    }
    if (this.remaining.length !== resources) {
      this.remaining = new Float64Array(resources);
      this.unfixed = new Int32Array(resources);
      this.start = new Int32Array(resources + 1);
      this.fill = new Int32Array(resources);
    }
    const { rates, fixed, remaining, unfixed, start, fill, members, heap } = this;
    const { slots, a, b, c, d } = flows;
    unfixed.fill(0);
    for (let i = 0; i < n; i += 1) {
      const slot = slots[i] as number;
      unfixed[a[slot] as number] = (unfixed[a[slot] as number] as number) + 1;
      unfixed[b[slot] as number] = (unfixed[b[slot] as number] as number) + 1;
      const rc = c[slot] as number;
      if (rc >= 0) {
        unfixed[rc] = (unfixed[rc] as number) + 1;
        unfixed[d[slot] as number] = (unfixed[d[slot] as number] as number) + 1;
      }
    }
    start[0] = 0;
    for (let r = 0; r < resources; r += 1) {
      start[r + 1] = (start[r] as number) + (unfixed[r] as number);
      fill[r] = start[r] as number;
      remaining[r] = cap[r] as number;
    }
    for (let i = 0; i < n; i += 1) {
      const slot = slots[i] as number;
      const ra = a[slot] as number;
      const rb = b[slot] as number;
      members[fill[ra] as number] = i;
      fill[ra] = (fill[ra] as number) + 1;
      members[fill[rb] as number] = i;
      fill[rb] = (fill[rb] as number) + 1;
      const rc = c[slot] as number;
      if (rc >= 0) {
        const rd = d[slot] as number;
        members[fill[rc] as number] = i;
        fill[rc] = (fill[rc] as number) + 1;
        members[fill[rd] as number] = i;
        fill[rd] = (fill[rd] as number) + 1;
      }
      fixed[i] = 0;
    }
    heap.clear();
    for (let r = 0; r < resources; r += 1) {
      const k = unfixed[r] as number;
      if (k > 0) heap.push(Math.max(0, remaining[r] as number) / k, r);
    }
    while (heap.size > 0) {
      const level = heap.topKey() as number;
      const r = heap.pop() as number;
      const k = unfixed[r] as number;
      if (k === 0 || level !== Math.max(0, remaining[r] as number) / k) continue;
      const end = start[r + 1] as number;
      for (let m = start[r] as number; m < end; m += 1) {
        const i = members[m] as number;
        if (fixed[i] === 1) continue;
        fixed[i] = 1;
        rates[i] = level;
        const slot = slots[i] as number;
        const ra = a[slot] as number;
        const rb = b[slot] as number;
        const rc = c[slot] as number;
        if (ra !== r) this.take(ra, level);
        if (rb !== r) this.take(rb, level);
        if (rc >= 0) {
          if (rc !== r) this.take(rc, level);
          const rd = d[slot] as number;
          if (rd !== r) this.take(rd, level);
        }
      }
      remaining[r] = 0;
      unfixed[r] = 0;
    }
    return rates;
  }

  private take(r: number, level: number): void {
    const remaining = (this.remaining[r] as number) - level;
    this.remaining[r] = remaining;
    const k = (this.unfixed[r] as number) - 1;
    this.unfixed[r] = k;
    if (k > 0) this.heap.push(Math.max(0, remaining) / k, r);
  }
}

/**
 * Max-min fairness by progressive filling, the plain way: O(resources × (resources +
 * flows)). The reference the heap version is tested against.
 */
export const exactMaxMin = (cap: Float64Array, flows: Flows): Float64Array => {
  const n = flows.count;
  const rates = new Float64Array(n);
  const remaining = Float64Array.from(cap);
  const unfixed = new Int32Array(cap.length);
  const byResource = new Map<number, number[]>();
  const resources: number[][] = [];
  for (let i = 0; i < n; i += 1) {
    const res = resourcesOf(flows, i);
    resources.push(res);
    for (const r of res) {
      unfixed[r] = (unfixed[r] as number) + 1;
      let list = byResource.get(r);
      if (list === undefined) byResource.set(r, (list = []));
      list.push(i);
    }
  }
  const fixed = new Uint8Array(n);
  let left = n;
  while (left > 0) {
    let best = -1;
    let level = Infinity;
    for (const r of byResource.keys()) {
      const count = unfixed[r] as number;
      if (count === 0) continue;
      const share = Math.max(0, remaining[r] as number) / count;
      if (share < level) {
        level = share;
        best = r;
      }
    }
    if (best < 0) break;
    for (const i of byResource.get(best) as number[]) {
      if (fixed[i] === 1) continue;
      fixed[i] = 1;
      left -= 1;
      rates[i] = level;
      for (const r of resources[i] as number[]) {
        remaining[r] = (remaining[r] as number) - level;
        unfixed[r] = (unfixed[r] as number) - 1;
      }
    }
  }
  return rates;
};

/**
 * Max-min fairness approximated in `passes` rounds, O(flows) each, on flat arrays (it runs
 * over every busy stream of the fleet each step): every resource shares what its flows
 * limited elsewhere leave among the flows it limits; then every resource that would be
 * overcommitted scales its flows down, so no capacity is ever exceeded.
 */
export class IterativeMaxMin {
  private rates = new Float64Array(0);
  private count = new Float64Array(0);
  private share = new Float64Array(0);
  private fixedSum = new Float64Array(0);
  private freeCount = new Float64Array(0);

  allocate(cap: Float64Array, flows: Flows, passes: number): Float64Array {
    const n = flows.count;
    if (n > this.rates.length) this.rates = new Float64Array(Math.max(n, 2 * this.rates.length));
    if (this.count.length !== cap.length) {
      this.count = new Float64Array(cap.length);
      this.share = new Float64Array(cap.length);
      this.fixedSum = new Float64Array(cap.length);
      this.freeCount = new Float64Array(cap.length);
    }
    const { rates, count, share, fixedSum, freeCount } = this;
    const { slots, a, b, c, d } = flows;
    count.fill(0);
    for (let i = 0; i < n; i += 1) {
      const slot = slots[i] as number;
      count[a[slot] as number] = (count[a[slot] as number] as number) + 1;
      count[b[slot] as number] = (count[b[slot] as number] as number) + 1;
      const rc = c[slot] as number;
      if (rc >= 0) {
        count[rc] = (count[rc] as number) + 1;
        count[d[slot] as number] = (count[d[slot] as number] as number) + 1;
      }
    }
    const resources = cap.length;
    for (let r = 0; r < resources; r += 1) {
      const k = count[r] as number;
      share[r] = k > 0 ? (cap[r] as number) / k : Infinity;
    }
    const assign = () => {
      for (let i = 0; i < n; i += 1) {
        const slot = slots[i] as number;
        let rate = Math.min(share[a[slot] as number] as number, share[b[slot] as number] as number);
        const rc = c[slot] as number;
        if (rc >= 0) rate = Math.min(rate, share[rc] as number, share[d[slot] as number] as number);
        rates[i] = rate;
      }
    };
    const tally = (r: number, rate: number) => {
      if (rate < (share[r] as number) * (1 - 1e-9)) fixedSum[r] = (fixedSum[r] as number) + rate;
      else freeCount[r] = (freeCount[r] as number) + 1;
    };
    assign();
    for (let pass = 0; pass < passes; pass += 1) {
      fixedSum.fill(0);
      freeCount.fill(0);
      for (let i = 0; i < n; i += 1) {
        const slot = slots[i] as number;
        const rate = rates[i] as number;
        tally(a[slot] as number, rate);
        tally(b[slot] as number, rate);
        const rc = c[slot] as number;
        if (rc >= 0) {
          tally(rc, rate);
          tally(d[slot] as number, rate);
        }
      }
      for (let r = 0; r < resources; r += 1) {
        if ((count[r] as number) === 0) continue;
        const free = freeCount[r] as number;
        share[r] =
          free > 0 ? Math.max(0, (cap[r] as number) - (fixedSum[r] as number)) / free : Infinity;
      }
      assign();
    }
    // No resource overcommitted.
    const load = fixedSum;
    load.fill(0);
    for (let i = 0; i < n; i += 1) {
      const slot = slots[i] as number;
      const rate = rates[i] as number;
      load[a[slot] as number] = (load[a[slot] as number] as number) + rate;
      load[b[slot] as number] = (load[b[slot] as number] as number) + rate;
      const rc = c[slot] as number;
      if (rc >= 0) {
        load[rc] = (load[rc] as number) + rate;
        load[d[slot] as number] = (load[d[slot] as number] as number) + rate;
      }
    }
    const factor = (r: number) => {
      const l = load[r] as number;
      const k = cap[r] as number;
      return l > k ? k / l : 1;
    };
    for (let i = 0; i < n; i += 1) {
      const slot = slots[i] as number;
      let scale = Math.min(factor(a[slot] as number), factor(b[slot] as number));
      const rc = c[slot] as number;
      if (rc >= 0) scale = Math.min(scale, factor(rc), factor(d[slot] as number));
      rates[i] = (rates[i] as number) * scale;
    }
    return rates;
  }
}

/** The iterative approximation as a function (tests compare it with `exactMaxMin`). */
export const iterativeMaxMin = (cap: Float64Array, flows: Flows, passes: number): Float64Array =>
  new IterativeMaxMin().allocate(cap, flows, passes).slice(0, flows.count);

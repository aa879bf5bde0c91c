import type { SimEngine } from './engine';

/*
 * The network model: a hose per host (an upload and a download capacity, the agents' token
 * buckets), optional zones whose traffic to other zones shares one uplink and one downlink,
 * and a one-way latency per pair of hosts. Data moves in streams — one per connection and
 * direction, carrying that connection's responses one after another as the wire does — whose
 * rates are the max-min fair allocation over the capacities (TCP's fair share between a
 * host's connections, and a work-conserving token bucket). Rates are recomputed for every
 * stream each `stepMs`; between steps a stream keeps its rate across the pieces it sends, a
 * stream that becomes busy takes what its hosts have free, and a piece ends at its exact
 * time. Pieces reach the receiver as blocks: one within a step of the start, then at least
 * every `blockEveryMs`, and the last at the end.
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

/** One answer being sent on a stream. */
export interface Response {
  readonly length: number;
  /** Bytes sent so far (kept by the network). */
  sent: number;
  /** Bytes already handed over as blocks. */
  emitted: number;
  lastEmitAt: number;
  /** Bytes left the sender (the receiver gets them a latency later). */
  onBlock(bytes: number, done: boolean): void;
  /**
   * The sender is done with the response: all of it written (its tail may still be in the
   * send buffer), or stopped (cancelled, closed). Called once.
   */
  onDone(sent: boolean): void;
  /** Set by the network once `onDone` was called. */
  released?: boolean;
}

const release = (response: Response, sent: boolean): void => {
  if (response.released === true) return;
  response.released = true;
  response.onDone(sent);
};

export class Stream {
  readonly src: number;
  readonly dst: number;
  readonly resources: Int32Array;
  readonly queue: Response[] = [];
  rate = 0;
  lastAt = 0;
  version = 0;
  activeIndex = -1;
  /** Bytes this stream carried (responses, whole or in part). */
  carried = 0;

  constructor(src: number, dst: number, resources: Int32Array) {
    this.src = src;
    this.dst = dst;
    this.resources = resources;
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

export class Network {
  readonly options: NetworkOptions;
  private readonly engine: SimEngine;
  private readonly hostCount: number;
  private readonly zoneCount: number;
  /** Capacity per resource, bytes per ms: hosts' up, hosts' down, zones' up, zones' down. */
  private readonly cap: Float64Array;
  private readonly load: Float64Array;
  /** Token buckets per resource: tokens now, the most they hold, bytes used since the step. */
  private readonly tokens: Float64Array;
  private readonly burst: Float64Array;
  private readonly used: Float64Array;
  private readonly capNow: Float64Array;
  private readonly zones: Int32Array;
  private readonly active: Stream[] = [];
  private stepping = false;
  private refilledAt = 0;
  private readonly allocator = new IterativeMaxMin();
  private lastStepAt = 0;
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
    // Buckets start full, as the agents' do.
    this.tokens.set(this.burst);
    for (let z = 0; z < zoneCount; z += 1) {
      const up = options.zoneUp?.[z] ?? 0;
      const down = options.zoneDown?.[z] ?? 0;
      this.cap[2 * hosts.length + z] = up > 0 ? up / 1000 : Infinity;
      this.cap[2 * hosts.length + zoneCount + z] = down > 0 ? down / 1000 : Infinity;
    }
  }

  /** Changes a host's capacities from now on (bytes/s). */
  setCapacity(host: number, up: number, down: number): void {
    this.cap[host] = up / 1000;
    this.cap[this.hostCount + host] = down / 1000;
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
    const zs = this.zoneOf(src);
    const zd = this.zoneOf(dst);
    const h = this.hostCount;
    const resources =
      zs === zd
        ? Int32Array.of(src, h + dst)
        : Int32Array.of(src, h + dst, 2 * h + zs, 2 * h + this.zoneCount + zd);
    return new Stream(src, dst, resources);
  }

  /** Queues a response on a stream; it starts when the ones before it are sent. */
  send(stream: Stream, response: Response): void {
    stream.queue.push(response);
    if (stream.queue.length === 1) this.activate(stream);
  }

  /** Stops a response (cancelled): sent bytes so far are handed over, the rest never sent. */
  stop(stream: Stream, response: Response): void {
    const at = stream.queue.indexOf(response);
    if (at < 0) return;
    if (response.released === true) return;
    if (at > 0) {
      stream.queue.splice(at, 1);
      release(response, false);
      return;
    }
    this.advance(stream, this.engine.now);
    if (response.sent > response.emitted) this.emit(response, false);
    stream.queue.shift();
    stream.version += 1;
    release(response, false);
    this.next(stream);
  }

  /** The connection closed: every queued response ends unsent. */
  close(stream: Stream): void {
    if (stream.queue.length === 0) return;
    this.advance(stream, this.engine.now);
    const queue = stream.queue.splice(0);
    this.deactivate(stream);
    for (const response of queue) release(response, false);
  }

  private activate(stream: Stream): void {
    const now = this.engine.now;
    stream.lastAt = now;
    stream.activeIndex = this.active.length;
    this.active.push(stream);
    this.peakStreams = Math.max(this.peakStreams, this.active.length);
    // Until the next step, what its hosts have free.
    let free = Infinity;
    for (const r of stream.resources)
      free = Math.min(free, (this.cap[r] as number) - (this.load[r] as number));
    this.setRate(stream, Math.max(0, free * 0.999999));
    this.scheduleHead(stream);
    if (!this.stepping) {
      this.stepping = true;
      this.lastStepAt = now;
      this.engine.after(0, () => this.step());
    }
  }

  private deactivate(stream: Stream): void {
    this.setRate(stream, 0);
    stream.version += 1;
    const at = stream.activeIndex;
    if (at < 0) return;
    const last = this.active.pop() as Stream;
    if (last !== stream) {
      this.active[at] = last;
      last.activeIndex = at;
    }
    stream.activeIndex = -1;
  }

  private setRate(stream: Stream, rate: number): void {
    const delta = rate - stream.rate;
    if (delta === 0) return;
    for (const r of stream.resources) this.load[r] = (this.load[r] as number) + delta;
    stream.rate = rate;
  }

  private advance(stream: Stream, now: number): void {
    const head = stream.queue[0];
    if (head !== undefined && stream.rate > 0 && now > stream.lastAt) {
      const bytes = Math.min(head.length - head.sent, stream.rate * (now - stream.lastAt));
      this.carry(stream, head, bytes);
    }
    stream.lastAt = now;
  }

  private carry(stream: Stream, head: Response, bytes: number): void {
    if (bytes <= 0) return;
    head.sent += bytes;
    stream.carried += bytes;
    this.totalBytes += bytes;
    if (stream.resources.length > 2) this.interZoneBytes += bytes;
    this.sentBy[stream.src] = (this.sentBy[stream.src] as number) + bytes;
    this.receivedBy[stream.dst] = (this.receivedBy[stream.dst] as number) + bytes;
    const res = stream.resources;
    for (let k = 0; k < res.length; k += 1) {
      const r = res[k] as number;
      this.used[r] = (this.used[r] as number) + bytes;
    }
  }

  /**
   * Schedules the head's release (its tail fits the send buffer) and its end, when they fall
   * before the next step.
   */
  private scheduleHead(stream: Stream): void {
    const head = stream.queue[0];
    if (head === undefined) return;
    const buffer = this.options.sendBufferBytes ?? 0;
    if (head.released !== true && head.length - head.sent <= buffer) {
      release(head, true);
    }
    if (stream.rate <= 0) return;
    const horizon = this.lastStepAt + this.options.stepMs;
    const version = (stream.version += 1);
    if (head.released !== true && buffer > 0) {
      const at = stream.lastAt + (head.length - buffer - head.sent) / stream.rate;
      if (at <= horizon) {
        this.engine.at(at, () => {
          if (stream.version !== version || stream.queue[0] !== head) return;
          this.advance(stream, this.engine.now);
          release(head, true);
        });
      }
    }
    const end = stream.lastAt + (head.length - head.sent) / stream.rate;
    if (end > horizon) return;
    this.engine.at(end, () => {
      if (stream.version === version) this.finish(stream);
    });
  }

  private finish(stream: Stream): void {
    const head = stream.queue[0] as Response;
    this.advance(stream, this.engine.now);
    this.carry(stream, head, head.length - head.sent);
    this.emit(head, true);
    stream.queue.shift();
    release(head, true);
    this.next(stream);
  }

  /** The head ended: the next response goes on at the stream's rate, or the stream idles. */
  private next(stream: Stream): void {
    if (stream.activeIndex < 0) return;
    if (stream.queue.length === 0) {
      this.deactivate(stream);
      return;
    }
    stream.lastAt = this.engine.now;
    this.scheduleHead(stream);
  }

  private emit(response: Response, done: boolean): void {
    const bytes = response.sent - response.emitted;
    response.emitted = response.sent;
    response.lastEmitAt = this.engine.now;
    response.onBlock(bytes, done);
  }

  private step(): void {
    const now = this.engine.now;
    this.steps += 1;
    if (this.active.length === 0) {
      this.stepping = false;
      return;
    }
    this.lastStepAt = now;
    const every = this.options.blockEveryMs;
    for (const stream of this.active) {
      this.advance(stream, now);
      const head = stream.queue[0];
      if (
        head !== undefined &&
        head.sent > head.emitted &&
        (head.emitted === 0 || now - head.lastEmitAt >= every)
      ) {
        this.emit(head, false);
      }
    }
    this.refill(now);
    this.allocate();
    for (const stream of this.active) {
      stream.version += 1;
      this.scheduleHead(stream);
    }
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
    for (let r = 0; r < this.cap.length; r += 1) {
      const cap = this.cap[r] as number;
      const burst = this.burst[r] as number;
      if (burst > 0) {
        const tokens = Math.min(
          burst,
          (this.tokens[r] as number) + cap * elapsed - (this.used[r] as number),
        );
        this.tokens[r] = tokens;
        this.capNow[r] = cap + Math.max(0, tokens) / step;
      } else this.capNow[r] = cap;
    }
    this.used.fill(0);
  }

  /** Max-min fair rates for the active streams. */
  private allocate(): void {
    const streams = this.active;
    const n = streams.length;
    const rates =
      this.options.allocation === 'exact'
        ? exactMaxMin(this.capNow, streams)
        : this.allocator.allocate(this.capNow, streams, this.options.passes);
    this.load.fill(0);
    const load = this.load;
    for (let f = 0; f < n; f += 1) {
      const stream = streams[f] as Stream;
      const rate = rates[f] as number;
      stream.rate = rate;
      const res = stream.resources;
      for (let k = 0; k < res.length; k += 1) {
        const r = res[k] as number;
        load[r] = (load[r] as number) + rate;
      }
    }
  }
}

type Flow = { readonly resources: Int32Array };

/**
 * Max-min fairness by progressive filling (exact): repeatedly the resource whose fair level
 * (remaining capacity ÷ flows not yet fixed) is lowest fixes its flows at that level.
 * O(resources × (resources + flows)): for small swarms and for checking the approximation.
 */
export const exactMaxMin = (cap: Float64Array, flows: readonly Flow[]): Float64Array => {
  const rates = new Float64Array(flows.length);
  const remaining = Float64Array.from(cap);
  const unfixed = new Int32Array(cap.length);
  const byResource = new Map<number, number[]>();
  flows.forEach((flow, f) => {
    for (const r of flow.resources) {
      unfixed[r] = (unfixed[r] as number) + 1;
      let list = byResource.get(r);
      if (list === undefined) byResource.set(r, (list = []));
      list.push(f);
    }
  });
  const fixed = new Uint8Array(flows.length);
  let left = flows.length;
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
    for (const f of byResource.get(best) as number[]) {
      if (fixed[f] === 1) continue;
      fixed[f] = 1;
      left -= 1;
      rates[f] = level;
      for (const r of (flows[f] as Flow).resources) {
        remaining[r] = (remaining[r] as number) - level;
        unfixed[r] = (unfixed[r] as number) - 1;
      }
    }
  }
  return rates;
};

/**
 * Max-min fairness approximated in `passes` rounds, O(flows) each, on flat arrays (it runs
 * over every stream of the fleet each step): every resource shares what its flows limited
 * elsewhere leave among the flows it limits; then every resource that would be overcommitted
 * scales its flows down, so no capacity is ever exceeded.
 */
export class IterativeMaxMin {
  private size = 0;
  private a = new Int32Array(0);
  private b = new Int32Array(0);
  private c = new Int32Array(0);
  private d = new Int32Array(0);
  private rates = new Float64Array(0);
  private count = new Float64Array(0);
  private share = new Float64Array(0);
  private fixedSum = new Float64Array(0);
  private freeCount = new Float64Array(0);

  allocate(cap: Float64Array, flows: readonly Flow[], passes: number): Float64Array {
    const n = flows.length;
    if (n > this.size) {
      this.size = Math.max(n, 2 * this.size, 1024);
      this.a = new Int32Array(this.size);
      this.b = new Int32Array(this.size);
      this.c = new Int32Array(this.size);
      this.d = new Int32Array(this.size);
      this.rates = new Float64Array(this.size);
    }
    if (this.count.length !== cap.length) {
      this.count = new Float64Array(cap.length);
      this.share = new Float64Array(cap.length);
      this.fixedSum = new Float64Array(cap.length);
      this.freeCount = new Float64Array(cap.length);
    }
    const { a, b, c, d, rates, count, share, fixedSum, freeCount } = this;
    count.fill(0);
    for (let f = 0; f < n; f += 1) {
      const res = (flows[f] as Flow).resources;
      const ra = res[0] as number;
      const rb = res[1] as number;
      a[f] = ra;
      b[f] = rb;
      count[ra] = (count[ra] as number) + 1;
      count[rb] = (count[rb] as number) + 1;
      if (res.length > 2) {
        const rc = res[2] as number;
        const rd = res[3] as number;
        c[f] = rc;
        d[f] = rd;
        count[rc] = (count[rc] as number) + 1;
        count[rd] = (count[rd] as number) + 1;
      } else {
        c[f] = -1;
        d[f] = -1;
      }
    }
    const resources = cap.length;
    for (let r = 0; r < resources; r += 1) {
      const k = count[r] as number;
      share[r] = k > 0 ? (cap[r] as number) / k : Infinity;
    }
    const assign = () => {
      for (let f = 0; f < n; f += 1) {
        let rate = Math.min(share[a[f] as number] as number, share[b[f] as number] as number);
        const rc = c[f] as number;
        if (rc >= 0) {
          rate = Math.min(rate, share[rc] as number, share[d[f] as number] as number);
        }
        rates[f] = rate;
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
      for (let f = 0; f < n; f += 1) {
        const rate = rates[f] as number;
        tally(a[f] as number, rate);
        tally(b[f] as number, rate);
        const rc = c[f] as number;
        if (rc >= 0) {
          tally(rc, rate);
          tally(d[f] as number, rate);
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
    for (let f = 0; f < n; f += 1) {
      const rate = rates[f] as number;
      load[a[f] as number] = (load[a[f] as number] as number) + rate;
      load[b[f] as number] = (load[b[f] as number] as number) + rate;
      const rc = c[f] as number;
      if (rc >= 0) {
        load[rc] = (load[rc] as number) + rate;
        load[d[f] as number] = (load[d[f] as number] as number) + rate;
      }
    }
    const factor = (r: number) => {
      const l = load[r] as number;
      const k = cap[r] as number;
      return l > k ? k / l : 1;
    };
    for (let f = 0; f < n; f += 1) {
      let scale = Math.min(factor(a[f] as number), factor(b[f] as number));
      const rc = c[f] as number;
      if (rc >= 0) scale = Math.min(scale, factor(rc), factor(d[f] as number));
      rates[f] = (rates[f] as number) * scale;
    }
    return rates;
  }
}

/** The iterative approximation as a function (tests compare it with `exactMaxMin`). */
export const iterativeMaxMin = (
  cap: Float64Array,
  flows: readonly Flow[],
  passes: number,
): Float64Array => new IterativeMaxMin().allocate(cap, flows, passes).slice(0, flows.length);

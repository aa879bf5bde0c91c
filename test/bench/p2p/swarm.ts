import { createHash, randomBytes } from 'node:crypto';
import type { IncomingMessage } from 'node:http';
import { get as httpGet } from 'node:http';
import { cpus, loadavg } from 'node:os';
import { TokenBucket } from '../../../p2p/bandwidth';
import type { P2pStatus, SwarmStats } from './cluster';
import { fetchBlob, json, startCluster } from './cluster';
import { MiB, cpuMeter, machineCpu, ownCpuMeter, quantile } from './processes';

/*
 * The swarm scenario: N agents fetch K layers at once through the swarm, against the bound
 * and against the same swarm with P2P off (every agent straight from the origin).
 */

export type SwarmOptions = {
  readonly dir: string;
  readonly agents: number;
  readonly size: number;
  readonly rate: number;
  readonly originRate: number;
  readonly layers: number;
  /** Blob size of the P2P-off run; 0: skip it. */
  readonly baselineSize: number;
  /** Size of the blob every agent fetches first, untimed. */
  readonly warmup: number;
  readonly log: (line: string) => void;
};

export type SwarmRow = {
  readonly p50: number;
  readonly p99: number;
  readonly bound: number;
  readonly originEgress: number;
  readonly cpuNsPerByte: number;
};

/** The fluid bound (Kumar & Ross) for N symmetric agents at R and an origin at u. */
export const swarmBound = (n: number, size: number, r: number, u: number): number =>
  Math.max(size / u, size / r, (n * size) / (u + n * r));

export const runSwarm = async (options: SwarmOptions) => {
  const { dir, agents: agentCount, rate, originRate, layers: layerCount, log } = options;
  const cluster = await startCluster({
    dir,
    originRate,
    trackerEnv: { SHOAL_ANNOUNCE_INTERVAL_MS: '1000' },
  });
  const agentProcs = await cluster.startAgents(agentCount, rate);
  const agents = agentProcs.map((a) => a.url);
  const pids = [cluster.origin, cluster.tracker, ...agentProcs].map((p) => p.child.pid);
  const originUrl = cluster.origin.url;

  // Blobs on the origin: the swarm's K layers, a calibration blob, the baseline blob.
  const layerSize = Math.ceil(options.size / layerCount);
  const layers: string[] = [];
  for (let i = 0; i < layerCount; i += 1) layers.push(await cluster.put(randomBytes(layerSize)));
  const total = layerSize * layerCount;
  const calibrationSize = Math.max(4 * MiB, Math.round(2 * Math.min(rate, originRate)));
  const calibration = await cluster.put(randomBytes(calibrationSize));
  const baselineSize = options.baselineSize;
  const baselineDigest =
    baselineSize > 0 ? await cluster.put(randomBytes(baselineSize)) : undefined;

  // Warm-up (discarded): every agent fetches a blob through the swarm first, so module
  // loading, first connections and the JIT are not timed: V8 optimizes a function only
  // after thousands of calls, and at a few MiB/s the data path makes a few hundred a second
  // (with 1 MiB, most of a 64 MiB run still ran unoptimized code: 14.8 vs 12.7 ns/B).
  const warmup = await cluster.put(randomBytes(options.warmup));
  await Promise.all(agents.map((agent) => fetchBlob(`${agent}/blobs/${warmup}`)));

  // Calibration: one agent alone, through the same buckets: achieved ÷ configured rate.
  const calibrated = await fetchBlob(`${agents[0]}/blobs/${calibration}`);
  const factor = Math.min(1, calibrationSize / (calibrated.ms / 1000) / Math.min(rate, originRate));
  const rEff = rate * factor;
  const uEff = originRate * factor;
  const originBefore = (await json<P2pStatus>(`${originUrl}/internal/p2p`)).totals.bytesUploaded;
  log(
    `calibration: ${(calibrationSize / MiB).toFixed(1)} MiB in ` +
      `${(calibrated.ms / 1000).toFixed(2)} s → ${(factor * 100).toFixed(1)} % of the configured rate`,
  );

  // The swarm: every agent fetches every layer at once.
  const load = loadavg()[0] ?? 0;
  const cpu = machineCpu();
  const own = cpuMeter(pids);
  const started = performance.now();
  const windowStart = process.hrtime.bigint() / 1000n;
  const results = await Promise.all(
    agents.map(async (agent) => {
      const fetched = await Promise.all(layers.map((d) => fetchBlob(`${agent}/blobs/${d}`)));
      fetched.forEach((f, i) => {
        if (f.digest !== layers[i]) throw new Error(`${agent}: wrong digest for layer ${i}`);
      });
      return { agent, ms: Math.max(...fetched.map((f) => f.ms)) };
    }),
  );
  const usage = cpu();
  const used = own();
  const ownCpu = used.total;
  const [originCpu = 0, trackerCpu = 0, ...agentCpu] = used.each;
  const agentSystem = used.system.slice(2).reduce((a, b) => a + b, 0);
  const wallMs = performance.now() - started;
  if (process.env.SHOAL_BENCH_NODE_ARGS) {
    const windowEnd = process.hrtime.bigint() / 1000n;
    log(`swarm window (monotonic µs, for profiles): ${windowStart} ${windowEnd}`);
  }
  const originSent =
    (await json<P2pStatus>(`${originUrl}/internal/p2p`)).totals.bytesUploaded - originBefore;
  const perAgent = await Promise.all(
    results.map(async ({ agent, ms }) => {
      const status = await json<P2pStatus>(`${agent}/internal/p2p`);
      const swarms = status.swarms.filter((s) => layers.includes(s.digest)).map((s) => s.stats);
      const firstByte = Math.min(...swarms.map((s) => s.firstByteAt ?? Infinity));
      const lastDone = Math.max(...swarms.map((s) => s.completedAt ?? -Infinity));
      const sum = (k: keyof SwarmStats) => swarms.reduce((n, s) => n + (s[k] ?? 0), 0);
      const joined = Math.min(...swarms.map((s) => s.startedAt));
      return {
        joinToFirstByte: (firstByte - joined) / 1000,
        firstByteToDone: (lastDone - firstByte) / 1000,
        seconds: ms / 1000,
        ttfbSeconds: Math.max(0, (ms - (lastDone - firstByte)) / 1000),
        duplicateBytes: sum('bytesReceived') - sum('bytesDownloaded') + sum('duplicateBytes'),
      };
    }),
  );

  const bound = swarmBound(agentCount, total, rEff, uEff);
  const times = perAgent.map((a) => a.seconds).sort((a, b) => a - b);
  const p50 = quantile(times, 0.5);
  const p99 = agentCount <= 100 ? (times[times.length - 1] as number) : quantile(times, 0.99);
  const ttfb = perAgent.map((a) => a.ttfbSeconds).sort((a, b) => a - b);
  const duplicate = perAgent.reduce((n, a) => n + a.duplicateBytes, 0);
  const valid = usage.busy <= 0.6 && usage.steal <= 0.05;
  const baseline =
    baselineDigest === undefined
      ? undefined
      : await runP2pOff(agentCount, baselineDigest, baselineSize, {
          originUrl,
          originPid: cluster.origin.child.pid,
          rEff,
          uEff,
        });

  const summary = {
    agents: agentCount,
    size: total,
    layers: layerCount,
    rate,
    origin_rate: originRate,
    rate_calibrated: Math.round(rEff),
    origin_rate_calibrated: Math.round(uEff),
    bound_s: bound,
    p50_s: p50,
    p99_s: p99,
    p99_is_slowest_agent: agentCount <= 100,
    efficiency_p50: bound / p50,
    efficiency_p99: bound / p99,
    tau_p50: p50 / (total / rEff),
    ttfb_p50_s: quantile(ttfb, 0.5),
    ttfb_max_s: ttfb[ttfb.length - 1],
    origin_egress_ratio: originSent / total,
    duplicate_bytes: duplicate,
    duplicate_ratio: duplicate / (agentCount * total),
    cpu_mean: usage.busy,
    cpu_steal: usage.steal,
    swarm_cpu_seconds: ownCpu,
    origin_cpu_seconds: originCpu,
    agents_system_cpu_seconds: agentSystem,
    tracker_cpu_seconds: trackerCpu,
    swarm_cpu_ns_per_byte: (ownCpu * 1e9) / (agentCount * total),
    cores: cpus().length,
    load_before: load,
    valid,
    wall_s: wallMs / 1000,
    baseline_size: baselineDigest === undefined ? undefined : baselineSize,
    baseline_p50_s: baseline?.p50,
    baseline_p99_s: baseline?.p99,
    baseline_tau_p50: baseline?.tau50,
    baseline_cpu_ns_per_byte: baseline?.cpuNsPerByte,
    per_agent_s: perAgent.map((a) => Number(a.seconds.toFixed(3))),
  };
  log(`\nper agent (s): ${perAgent.map((a) => a.seconds.toFixed(2)).join(' ')}`);
  log(`  join → first byte: ${perAgent.map((a) => a.joinToFirstByte.toFixed(2)).join(' ')}`);
  log(`  first byte → done: ${perAgent.map((a) => a.firstByteToDone.toFixed(2)).join(' ')}`);
  log(`bound T = max(F/u, F/R, N·F/(u+N·R)) = ${bound.toFixed(2)} s`);
  log(`p50 ${p50.toFixed(2)} s   p99 ${p99.toFixed(2)} s (N ≤ 100: the slowest agent)`);
  log(`η p50 ${(bound / p50).toFixed(3)}   η p99 ${(bound / p99).toFixed(3)}`);
  log(
    `TTFB p50 ${summary.ttfb_p50_s.toFixed(2)} s   max ${(summary.ttfb_max_s ?? 0).toFixed(2)} s`,
  );
  log(
    `origin sent ${(originSent / MiB).toFixed(1)} MiB = ${(originSent / total).toFixed(2)} × size`,
  );
  log(
    `duplicate bytes ${(duplicate / MiB).toFixed(2)} MiB ` +
      `(${(summary.duplicate_ratio * 100).toFixed(2)} %)`,
  );
  log(
    `CPU mean ${(usage.busy * 100).toFixed(0)} % of ${cpus().length} cores, steal ` +
      `${(usage.steal * 100).toFixed(1)} %, load before ${load.toFixed(2)}; the swarm's ` +
      `processes used ${ownCpu.toFixed(1)} CPU s` +
      (valid ? '' : '   INVALID: the machine was the bottleneck'),
  );
  log(
    `  CPU s: origin ${originCpu.toFixed(2)}, tracker ${trackerCpu.toFixed(2)}, agents ` +
      `${agentCpu.reduce((a, b) => a + b, 0).toFixed(2)} (each ${agentCpu.map((c) => c.toFixed(2)).join(' ')}; ` +
      `${agentSystem.toFixed(2)} of them in the kernel)`,
  );
  log(`swarm_cpu_ns_per_byte ${summary.swarm_cpu_ns_per_byte.toFixed(2)} (P2P)`);
  if (baseline !== undefined) {
    log(
      `swarm_cpu_ns_per_byte ${baseline.cpuNsPerByte.toFixed(2)} (P2P off: the origin and ` +
        `the harness as ${agentCount} clients, ${(baselineSize / MiB).toFixed(0)} MiB each)`,
    );
    log(
      `P2P off: p50 ${baseline.p50.toFixed(2)} s, τ p50 ${baseline.tau50.toFixed(2)} ` +
        `vs P2P τ p50 ${summary.tau_p50.toFixed(2)}`,
    );
  }
  const row: SwarmRow = {
    p50,
    p99,
    bound,
    originEgress: originSent / total,
    cpuNsPerByte: summary.swarm_cpu_ns_per_byte,
  };
  return { summary, row };
};

/**
 * P2P off: every agent's share fetched straight from the origin's HTTP API, each client
 * held to the agents' rate and all of them to the origin's, by the harness itself. CPU per
 * delivered byte counts the origin and the harness (the clients: reading and hashing).
 */
const runP2pOff = async (
  agentCount: number,
  digest: string,
  size: number,
  at: { originUrl: string; originPid: number | undefined; rEff: number; uEff: number },
) => {
  const shared = new TokenBucket({ rate: at.uEff });
  const origin = cpuMeter([at.originPid]);
  const harness = ownCpuMeter();
  const times = await Promise.all(
    Array.from({ length: agentCount }, async () => {
      const own = new TokenBucket({ rate: at.rEff });
      const t0 = performance.now();
      // `Connection: close`: the origin's keep-alive timeout (armed once its last bytes are
      // in the socket buffers) would cut this deliberately slow reader's tail.
      const response = await new Promise<IncomingMessage>((done, fail) =>
        httpGet(
          `${at.originUrl}/internal/blobs/${digest}`,
          { headers: { connection: 'close' }, agent: false },
          done,
        ).once('error', fail),
      );
      if (response.statusCode !== 200) throw new Error(`baseline: ${response.statusCode}`);
      const hash = createHash('sha256');
      for await (const chunk of response as AsyncIterable<Buffer>) {
        for (let at = 0; at < chunk.length; at += 64 * 1024) {
          const piece = chunk.subarray(at, at + 64 * 1024);
          await own.take(piece.length);
          await shared.take(piece.length);
          hash.update(piece);
        }
      }
      if (`sha256:${hash.digest('hex')}` !== digest) throw new Error('baseline digest');
      return (performance.now() - t0) / 1000;
    }),
  );
  const cpu = origin().total + harness();
  times.sort((a, b) => a - b);
  const p50 = quantile(times, 0.5);
  return {
    p50,
    p99: times[times.length - 1] as number,
    tau50: p50 / (size / at.rEff),
    cpuNsPerByte: (cpu * 1e9) / (agentCount * size),
  };
};

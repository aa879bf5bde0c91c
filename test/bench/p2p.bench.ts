/**
 * `npm run bench:p2p -- --agents N --size BYTES --rate BYTES_PER_S --origin-rate BYTES_PER_S
 *  [--layers K] [--baseline-size BYTES] [--no-baseline] [--json]`
 *
 * Efficiency of the swarm against the physical bound (T_bound, below). Starts
 * an origin (its seeder limited to `--origin-rate`), a tracker and N agents (each limited to
 * `--rate` in and out) as separate processes on loopback — spawning is not timed — stores
 * `--size` bytes of random content as K blobs on the origin, and has every agent fetch all of
 * them at once through its generic `GET /blobs/<digest>`. Every agent's bytes are hashed and
 * checked against the digest; a mismatch fails the run.
 *
 * Reported: per-agent completion times T_i (from the request to the verified blob), p50 and
 * p99 (for N ≤ 100 the p99 is the slowest agent), time to first byte, and the efficiency
 * η = T_bound / T with T_bound = max(F/u_origin, F/R, N·F/(u_origin + N·R)), the rates
 * calibrated by one timed transfer (one agent alone, through the same token buckets); origin
 * bytes sent ÷ F; duplicate bytes (received but not stored); the machine's mean CPU and steal
 * while the swarm ran (a run is marked invalid when the machine, not the protocol, was the
 * bottleneck: CPU > 60 % or steal > 5 %); and the same swarm with P2P off: every agent fetches
 * straight from the origin's HTTP API, with the same per-agent and origin caps, compared in
 * normalised time τ = T/(F/R). `--size` and rates take suffixes (KiB, MiB, GiB).
 */
import { spawn } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { get as httpGet } from 'node:http';
import type { IncomingMessage } from 'node:http';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { cpus, loadavg, tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { TokenBucket } from '../../p2p/bandwidth';
import { sha256 } from '../fixtures/blobs';

const { values: args } = parseArgs({
  options: {
    agents: { type: 'string', default: '8' },
    size: { type: 'string', default: '32MiB' },
    rate: { type: 'string', default: '8MiB' },
    'origin-rate': { type: 'string', default: '' },
    layers: { type: 'string', default: '1' },
    'baseline-size': { type: 'string', default: '' },
    'no-baseline': { type: 'boolean', default: false },
    json: { type: 'boolean', default: false },
  },
});

const parseBytes = (text: string, what: string): number => {
  const m = /^(\d+(?:\.\d+)?)\s*(B|KiB|MiB|GiB|K|M|G|KB|MB|GB)?(?:\/s)?$/i.exec(text.trim());
  if (m === null) throw new Error(`${what}: want e.g. 128MiB or 6291456; got "${text}"`);
  const unit = (m[2] ?? 'B').toUpperCase().replace(/I?B$/, '') || 'B';
  const factor = { B: 1, K: 1024, M: 1024 ** 2, G: 1024 ** 3 }[unit] ?? 1;
  return Math.round(Number(m[1]) * factor);
};

const MiB = 1024 * 1024;
const agentCount = Number(args.agents);
const size = parseBytes(args.size, '--size');
const rate = parseBytes(args.rate, '--rate');
const originRate =
  args['origin-rate'] === '' ? 4 * rate : parseBytes(args['origin-rate'], '--origin-rate');
const layerCount = Math.max(1, Number(args.layers));
const baselineSize =
  args['baseline-size'] === ''
    ? Math.max(MiB, Math.floor(size / 4))
    : parseBytes(args['baseline-size'], '--baseline-size');

const root = resolve(__dirname, '../../..');
const cli = join(root, 'dist/services/cli/main.js');
const log = (line: string) => {
  if (!args.json) process.stdout.write(`${line}\n`);
  else process.stderr.write(`${line}\n`);
};

const freePort = (): Promise<number> =>
  new Promise((done, fail) => {
    const server = createServer();
    server.once('error', fail);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as { port: number };
      server.close(() => done(port));
    });
  });

const children: ChildProcess[] = [];
/** The last output of every child, by its argv (shown when the run fails). */
const outputs = new Map<string, () => string>();
/** Set once the harness stops its processes; an exit before that is reported. */
let stopping = false;

/**
 * Starts `shoal …` and waits until `url/health` answers 200; with a RegExp, the URL is the
 * first group of the line the process prints when it listens (for port 0: no port races).
 */
const startShoal = async (
  argv: string[],
  where: string | RegExp,
  env: NodeJS.ProcessEnv = {},
): Promise<string> => {
  // e.g. SHOAL_BENCH_NODE_ARGS='--cpu-prof --cpu-prof-dir=/tmp/x' to profile every process.
  const nodeArgs = (process.env.SHOAL_BENCH_NODE_ARGS ?? '').split(' ').filter(Boolean);
  const child = spawn(process.execPath, [...nodeArgs, cli, ...argv], {
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, SHOAL_LOG_LEVEL: 'warn', ...env },
  });
  children.push(child);
  let output = '';
  child.stdout?.on('data', (d: Buffer) => (output = (output + d.toString()).slice(-8000)));
  child.stderr?.on('data', (d: Buffer) => (output = (output + d.toString()).slice(-8000)));
  outputs.set(argv.join(' '), () => output);
  child.once('exit', (code, signal) => {
    if (!stopping) {
      process.stderr.write(`shoal ${argv.join(' ')} exited (${code ?? signal}):\n${output}\n`);
    }
  });
  // Generous: spawning 64 processes on a busy 2-core machine takes a while (not timed).
  const deadline = Date.now() + 300_000;
  while (Date.now() < deadline) {
    if (child.exitCode !== null) throw new Error(`shoal ${argv[0]} exited:\n${output}`);
    const url = typeof where === 'string' ? where : where.exec(output)?.[1];
    const ok =
      url !== undefined &&
      (await fetch(`${url}/health`)
        .then((r) => r.status === 200)
        .catch(() => false));
    if (ok) return url;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`shoal ${argv[0]} did not start:\n${output}`);
};

const stopAll = async () => {
  stopping = true;
  await Promise.all(
    children.map(
      (child) =>
        new Promise<void>((done) => {
          if (child.exitCode !== null || child.signalCode !== null) return done();
          const killer = setTimeout(() => child.kill('SIGKILL'), 10_000);
          child.once('exit', () => {
            clearTimeout(killer);
            done();
          });
          child.kill('SIGTERM');
        }),
    ),
  );
};

/** Samples /proc/stat: mean busy and steal fractions of all cores over the window. */
const cpuSampler = () => {
  const read = () => {
    const line = readFileSync('/proc/stat', 'utf8').split('\n')[0] ?? '';
    const v = line.trim().split(/\s+/).slice(1).map(Number);
    const [user = 0, nice = 0, system = 0, idle = 0, iowait = 0, irq = 0, softirq = 0, steal = 0] =
      v;
    const total = user + nice + system + idle + iowait + irq + softirq + steal;
    return { total, idle: idle + iowait, steal };
  };
  const start = read();
  return () => {
    const end = read();
    const total = Math.max(1, end.total - start.total);
    return { busy: 1 - (end.idle - start.idle) / total, steal: (end.steal - start.steal) / total };
  };
};

/** CPU seconds (user + system) our child processes have used so far. */
const childCpuSeconds = (): number => {
  let ticks = 0;
  for (const child of children) {
    try {
      const stat = readFileSync(`/proc/${child.pid}/stat`, 'utf8');
      const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      ticks += Number(fields[11]) + Number(fields[12]);
    } catch {
      // exited
    }
  }
  return ticks / 100;
};

type SwarmStats = {
  startedAt: number;
  firstByteAt?: number;
  completedAt?: number;
  bytesReceived: number;
  bytesDownloaded: number;
  originBytes: number;
  duplicateBytes: number;
  bytesUploaded: number;
};
type AgentStatus = {
  totals: { bytesUploaded: number };
  swarms: Array<{ digest: string; stats: SwarmStats }>;
};

const json = async <T>(url: string): Promise<T> => (await (await fetch(url)).json()) as T;

/** Fetches a blob and hashes it as it streams; resolves with the time and the digest. */
const fetchBlob = async (url: string) => {
  const started = performance.now();
  let phase = 'headers';
  try {
    const response = await fetch(url);
    if (response.status !== 200 || response.body === null) {
      throw new Error(`${url}: ${response.status} ${await response.text()}`);
    }
    // The agent answers once the blob is complete and verified: that is its completion time.
    const ready = performance.now() - started;
    phase = 'body';
    const hash = createHash('sha256');
    for await (const chunk of response.body) hash.update(chunk as Uint8Array);
    const digest = `sha256:${hash.digest('hex')}`;
    return { ms: ready, bodyMs: performance.now() - started, digest };
  } catch (error) {
    const elapsed = ((performance.now() - started) / 1000).toFixed(1);
    throw new Error(`GET ${url} failed in the ${phase} after ${elapsed} s`, { cause: error });
  }
};

const quantile = (sorted: number[], q: number) =>
  sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1))] ?? NaN;

const main = async () => {
  if (!existsSync(cli)) throw new Error('run `npm run build` first');
  if (agentCount * rate > 200 * 1000 * 1000) {
    log(`warning: N·R = ${((agentCount * rate) / MiB).toFixed(0)} MiB/s: more than 2 cores carry`);
  }
  const base = existsSync('/dev/shm') ? '/dev/shm' : tmpdir();
  const dir = mkdtempSync(join(base, 'shoal-bench-p2p-'));
  try {
    const originPort = await freePort();
    const originP2p = await freePort();
    const trackerPort = await freePort();
    const originUrl = `http://127.0.0.1:${originPort}`;
    const trackerUrl = `http://127.0.0.1:${trackerPort}`;
    writeFileSync(
      join(dir, 'origin.yaml'),
      [
        'id: o1',
        `dataDir: ${join(dir, 'data')}`,
        `listen: { host: 127.0.0.1, port: ${originPort} }`,
        'replicas: 1',
        'logLevel: warn',
        'p2p:',
        `  port: ${originP2p}`,
        `  bandwidth: { egressBytesPerSecond: ${originRate} }`,
        // e.g. SHOAL_BENCH_ORIGIN_SCHEDULER='{ maxUploads: 4 }' to try settings.
        ...(process.env.SHOAL_BENCH_ORIGIN_SCHEDULER
          ? [`  scheduler: ${process.env.SHOAL_BENCH_ORIGIN_SCHEDULER}`]
          : []),
      ].join('\n'),
    );
    await startShoal(['origin', '--config', join(dir, 'origin.yaml')], originUrl);
    await startShoal(
      ['tracker', '--host', '127.0.0.1', '--port', String(trackerPort), '--origin', originUrl],
      trackerUrl,
      { SHOAL_ANNOUNCE_INTERVAL_MS: '1000' },
    );
    const agents = await Promise.all(
      Array.from({ length: agentCount }, async (_, i) => {
        const config = join(dir, `agent-${i}.yaml`);
        mkdirSync(join(dir, `agent-${i}`), { recursive: true });
        writeFileSync(
          config,
          [
            `id: a${i}`,
            `dataDir: ${join(dir, `agent-${i}`)}`,
            'listen: { host: 127.0.0.1, port: 0 }',
            'logLevel: warn',
            'p2p:',
            `  bandwidth: { ingressBytesPerSecond: ${rate}, egressBytesPerSecond: ${rate} }`,
            ...(process.env.SHOAL_BENCH_AGENT_SCHEDULER
              ? [`  scheduler: ${process.env.SHOAL_BENCH_AGENT_SCHEDULER}`]
              : []),
            `trackers: { urls: [${trackerUrl}] }`,
            'cache: { fsync: false }',
          ].join('\n'),
        );
        return startShoal(['agent', '--config', config], /agent \S+ listening on (http:\/\/\S+)/);
      }),
    );

    // Blobs on the origin: the swarm's K layers, a calibration blob, the baseline blob.
    const put = async (bytes: Buffer) => {
      const digest = sha256(bytes);
      const response = await fetch(`${originUrl}/internal/blobs/${digest}?repo=bench/p2p`, {
        method: 'PUT',
        body: bytes,
        headers: { 'content-type': 'application/octet-stream' },
      });
      if (!response.ok) throw new Error(`cannot store a blob: ${await response.text()}`);
      return digest;
    };
    const layerSize = Math.ceil(size / layerCount);
    const layers: string[] = [];
    for (let i = 0; i < layerCount; i += 1) layers.push(await put(randomBytes(layerSize)));
    const total = layerSize * layerCount;
    const calibrationSize = Math.max(4 * MiB, Math.round(2 * Math.min(rate, originRate)));
    const calibration = await put(randomBytes(calibrationSize));
    const baselineDigest = args['no-baseline'] ? undefined : await put(randomBytes(baselineSize));

    // Warm-up (discarded): every agent fetches a small blob through the swarm first, so
    // module loading, JIT and first connections are not timed.
    const warmup = await put(randomBytes(MiB));
    await Promise.all(agents.map((agent) => fetchBlob(`${agent}/blobs/${warmup}`)));

    // Calibration: one agent alone, through the same buckets: achieved ÷ configured rate.
    const calibrated = await fetchBlob(`${agents[0]}/blobs/${calibration}`);
    const factor = Math.min(
      1,
      calibrationSize / (calibrated.ms / 1000) / Math.min(rate, originRate),
    );
    const rEff = rate * factor;
    const uEff = originRate * factor;
    const originBefore = (await json<AgentStatus>(`${originUrl}/internal/p2p`)).totals
      .bytesUploaded;
    log(
      `calibration: ${(calibrationSize / MiB).toFixed(1)} MiB in ` +
        `${(calibrated.ms / 1000).toFixed(2)} s ` +
        `→ ${(factor * 100).toFixed(1)} % of the configured rate`,
    );

    // The swarm: every agent fetches every layer at once.
    const load = loadavg()[0] ?? 0;
    const cpu = cpuSampler();
    const ownCpuBefore = childCpuSeconds();
    const started = performance.now();
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
    const wallMs = performance.now() - started;
    const ownCpu = childCpuSeconds() - ownCpuBefore;
    const originSent =
      (await json<AgentStatus>(`${originUrl}/internal/p2p`)).totals.bytesUploaded - originBefore;
    const perAgent = await Promise.all(
      results.map(async ({ agent, ms }) => {
        const status = await json<AgentStatus>(`${agent}/internal/p2p`);
        const swarms = status.swarms.filter((s) => layers.includes(s.digest)).map((s) => s.stats);
        const firstByte = Math.min(...swarms.map((s) => s.firstByteAt ?? Infinity));
        const lastDone = Math.max(...swarms.map((s) => s.completedAt ?? -Infinity));
        const sum = (k: keyof SwarmStats) => swarms.reduce((n, s) => n + (s[k] ?? 0), 0);
        const joined = Math.min(...swarms.map((s) => s.startedAt));
        return {
          agent,
          joinToFirstByte: (firstByte - joined) / 1000,
          firstByteToDone: (lastDone - firstByte) / 1000,
          seconds: ms / 1000,
          ttfbSeconds: Math.max(0, (ms - (lastDone - firstByte)) / 1000),
          duplicateBytes: sum('bytesReceived') - sum('bytesDownloaded') + sum('duplicateBytes'),
          fromOrigin: sum('originBytes'),
          uploaded: sum('bytesUploaded'),
        };
      }),
    );

    // The bound (rates as calibrated) and the efficiencies.
    const bound = Math.max(
      total / uEff,
      total / rEff,
      (agentCount * total) / (uEff + agentCount * rEff),
    );
    const times = perAgent.map((a) => a.seconds).sort((a, b) => a - b);
    const p50 = quantile(times, 0.5);
    const p99 = agentCount <= 100 ? (times[times.length - 1] as number) : quantile(times, 0.99);
    const ttfb = perAgent.map((a) => a.ttfbSeconds).sort((a, b) => a - b);
    const duplicate = perAgent.reduce((n, a) => n + a.duplicateBytes, 0);
    const valid = usage.busy <= 0.6 && usage.steal <= 0.05;

    // Baseline: P2P off — every agent straight from the origin, same caps, smaller blob.
    let baseline: { p50: number; p99: number; tau50: number } | undefined;
    if (baselineDigest !== undefined) {
      const shared = new TokenBucket({ rate: uEff });
      const timesCs = await Promise.all(
        agents.map(async () => {
          const own = new TokenBucket({ rate: rEff });
          const t0 = performance.now();
          // `Connection: close`: the origin's keep-alive timeout (armed once its last bytes
          // are in the socket buffers) would cut this deliberately slow reader's tail.
          const response = await new Promise<IncomingMessage>((done, fail) =>
            httpGet(
              `${originUrl}/internal/blobs/${baselineDigest}`,
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
          if (`sha256:${hash.digest('hex')}` !== baselineDigest) throw new Error('baseline digest');
          return (performance.now() - t0) / 1000;
        }),
      );
      timesCs.sort((a, b) => a - b);
      const p50cs = quantile(timesCs, 0.5);
      baseline = {
        p50: p50cs,
        p99: timesCs[timesCs.length - 1] as number,
        tau50: p50cs / (baselineSize / rEff),
      };
    }

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
      swarm_cpu_ns_per_byte: (ownCpu * 1e9) / (agentCount * total),
      cores: cpus().length,
      load_before: load,
      valid,
      wall_s: wallMs / 1000,
      baseline_size: baselineDigest === undefined ? undefined : baselineSize,
      baseline_p50_s: baseline?.p50,
      baseline_p99_s: baseline?.p99,
      baseline_tau_p50: baseline?.tau50,
      per_agent_s: perAgent.map((a) => Number(a.seconds.toFixed(3))),
    };
    if (args.json) {
      process.stdout.write(`${JSON.stringify(summary)}\n`);
    } else {
      log(`\nper agent (s): ${perAgent.map((a) => a.seconds.toFixed(2)).join(' ')}`);
      log(`  join → first byte: ${perAgent.map((a) => a.joinToFirstByte.toFixed(2)).join(' ')}`);
      log(`  first byte → done: ${perAgent.map((a) => a.firstByteToDone.toFixed(2)).join(' ')}`);
      log(`bound T = max(F/u, F/R, N·F/(u+N·R)) = ${bound.toFixed(2)} s`);
      log(`p50 ${p50.toFixed(2)} s   p99 ${p99.toFixed(2)} s (N ≤ 100: the slowest agent)`);
      log(`η p50 ${(bound / p50).toFixed(3)}   η p99 ${(bound / p99).toFixed(3)}`);
      log(
        `TTFB p50 ${summary.ttfb_p50_s.toFixed(2)} s   ` +
          `max ${(summary.ttfb_max_s ?? 0).toFixed(2)} s`,
      );
      log(
        `origin sent ${(originSent / MiB).toFixed(1)} MiB = ` +
          `${(originSent / total).toFixed(2)} × size`,
      );
      log(
        `duplicate bytes ${(duplicate / MiB).toFixed(2)} MiB ` +
          `(${(summary.duplicate_ratio * 100).toFixed(2)} %)`,
      );
      log(
        `CPU mean ${(usage.busy * 100).toFixed(0)} % of ${cpus().length} cores, steal ` +
          `${(usage.steal * 100).toFixed(1)} %, load before ${load.toFixed(2)}; the swarm's ` +
          `processes used ${ownCpu.toFixed(1)} CPU s ` +
          `(${summary.swarm_cpu_ns_per_byte.toFixed(1)} ns per delivered byte)` +
          (valid ? '' : '   INVALID: the machine was the bottleneck'),
      );
      if (baseline !== undefined) {
        log(
          `P2P off (${(baselineSize / MiB).toFixed(0)} MiB): p50 ${baseline.p50.toFixed(2)} s, ` +
            `τ p50 ${baseline.tau50.toFixed(2)} vs P2P τ p50 ${summary.tau_p50.toFixed(2)}`,
        );
      }
    }
  } finally {
    await stopAll();
    rmSync(dir, { recursive: true, force: true });
  }
};

main().catch(async (error: unknown) => {
  const cause: unknown = (error as { cause?: unknown }).cause;
  process.stderr.write(`${(error as Error).stack ?? String(error)}\n`);
  for (let c = cause; c !== undefined; c = (c as { cause?: unknown }).cause) {
    process.stderr.write(`cause: ${String(c)}\n`);
  }
  for (const [argv, output] of outputs) {
    const lines = output()
      .split('\n')
      .filter((l) => /warn|error|"level":[45]0/i.test(l));
    if (lines.length > 0) process.stderr.write(`--- ${argv}:\n${lines.slice(-5).join('\n')}\n`);
  }
  await stopAll();
  process.exitCode = 1;
});

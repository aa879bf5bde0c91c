/**
 * `npm run bench:p2p -- --agents N --size BYTES --rate BYTES_PER_S --origin-rate BYTES_PER_S
 *  [--layers K] [--warmup BYTES] [--baseline-size BYTES] [--no-baseline] [--kraken DIR] [--json]`
 * `npm run bench:p2p -- --pair [--size 1GiB]`
 * `npm run bench:p2p -- --memory [--size 256MiB --large 4GiB]`
 *
 * The swarm (default): efficiency against the physical bound (T_bound, below).
 * Starts an origin (its seeder limited to `--origin-rate`), a tracker and N agents (each
 * limited to `--rate` in and out) as separate processes on loopback — spawning is not timed —
 * stores `--size` bytes of random content as K blobs on the origin, has every agent fetch a
 * `--warmup` blob (default a quarter of the size; untimed, for the JIT) and then all K blobs
 * at once through its generic `GET /blobs/<digest>`. Every agent's bytes are hashed and
 * checked against the digest; a mismatch fails the run. Reported: per-agent
 * completion times T_i (from the request to the verified blob), p50 and p99 (for N ≤ 100 the
 * p99 is the slowest agent), time to first byte, and the efficiency η = T_bound / T with
 * T_bound = max(F/u_origin, F/R, N·F/(u_origin + N·R)), the rates calibrated by one timed
 * transfer (one agent alone, through the same token buckets); origin bytes sent ÷ F;
 * duplicate bytes; the machine's mean CPU and steal while the swarm ran (a run is invalid
 * when the machine, not the protocol, was the bottleneck: CPU > 60 % or steal > 5 %); the CPU
 * of every swarm process per delivered byte (`swarm_cpu_ns_per_byte`); and the same swarm
 * with P2P off (every agent straight from the origin's HTTP API, same caps), its time
 * normalised τ = T/(F/R) and its CPU per delivered byte. `--kraken DIR` then runs Kraken's
 * swarm (DIR/run.sh: Kraken v0.1.27's binaries and runner) with the same N, size and rates and prints
 * both rows; without Kraken's binaries in DIR it says so in one line and goes on.
 *
 * `--pair`: one blob (default 1 GiB) from a seeded agent to another, no rate limit, verified,
 * MB/s and CPU per byte, beside curl fetching it from the CNCF registry on loopback.
 * `--memory`: an agent's peak RSS growth pulling a small and a large blob.
 * `--size` and rates take suffixes (KiB, MiB, GiB).
 */
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { runKraken } from './p2p/kraken';
import { runMemory } from './p2p/memory';
import { runPair } from './p2p/pair';
import type { SwarmRow } from './p2p/swarm';
import { runSwarm } from './p2p/swarm';
import { MiB, childWarnings, cli, logTo, parseBytes, stopAll } from './p2p/processes';
import { benchArgs } from './args';

const optionSpec = {
  agents: { type: 'string', default: '8' },
  size: { type: 'string', default: '' },
  rate: { type: 'string', default: '8MiB' },
  'origin-rate': { type: 'string', default: '' },
  layers: { type: 'string', default: '1' },
  'baseline-size': { type: 'string', default: '' },
  warmup: { type: 'string', default: '' },
  'no-baseline': { type: 'boolean', default: false },
  kraken: { type: 'string', default: '' },
  pair: { type: 'boolean', default: false },
  memory: { type: 'boolean', default: false },
  large: { type: 'string', default: '4GiB' },
  json: { type: 'boolean', default: false },
} as const;

const usage = `usage: npm run bench:p2p -- [--agents N] [--size BYTES] [--rate BYTES_PER_S]
         [--origin-rate BYTES_PER_S] [--layers K] [--warmup BYTES] [--baseline-size BYTES]
         [--no-baseline] [--kraken DIR] [--json]
       npm run bench:p2p -- --pair [--size 1GiB]
       npm run bench:p2p -- --memory [--size 256MiB] [--large 4GiB]
Sizes and rates take KiB, MiB and GiB suffixes. Defaults: 8 agents, 32 MiB, 8 MiB/s per agent,
the origin at 4 × the agents' rate, the P2P-off baseline on a quarter of the size.`;

const args = benchArgs('bench:p2p', optionSpec, usage);

const log = logTo(args.json);

const printRows = (rows: Array<[string, SwarmRow]>) => {
  log('\n| swarm | p50 | p99 | η p50 / p99 | origin sent ÷ size | CPU ns per byte |');
  log('| --- | --- | --- | --- | --- | --- |');
  for (const [name, r] of rows) {
    log(
      `| ${name} | ${r.p50.toFixed(1)} s | ${r.p99.toFixed(1)} s | ` +
        `${(r.bound / r.p50).toFixed(2)} / ${(r.bound / r.p99).toFixed(2)} | ` +
        `${r.originEgress.toFixed(2)} | ${r.cpuNsPerByte.toFixed(1)} |`,
    );
  }
};

const main = async () => {
  if (!existsSync(cli)) throw new Error('run `npm run build` first');
  const base = existsSync('/dev/shm') ? '/dev/shm' : tmpdir();
  const dir = mkdtempSync(join(base, 'shoal-bench-p2p-'));
  let result: unknown;
  try {
    if (args.pair) {
      const size = parseBytes(args.size || '1GiB', '--size');
      result = await runPair({ dir, size, log });
    } else if (args.memory) {
      const small = parseBytes(args.size || '256MiB', '--size');
      result = await runMemory({ dir, small, large: parseBytes(args.large, '--large'), log });
    } else {
      const agents = Number(args.agents);
      const size = parseBytes(args.size || '32MiB', '--size');
      const rate = parseBytes(args.rate, '--rate');
      const originRate =
        args['origin-rate'] === '' ? 4 * rate : parseBytes(args['origin-rate'], '--origin-rate');
      if (agents * rate > 200 * 1000 * 1000) {
        log(`warning: N·R = ${((agents * rate) / MiB).toFixed(0)} MiB/s: more than 2 cores carry`);
      }
      const baselineSize = args['no-baseline']
        ? 0
        : args['baseline-size'] === ''
          ? Math.max(MiB, Math.floor(size / 4))
          : parseBytes(args['baseline-size'], '--baseline-size');
      const swarm = await runSwarm({
        dir,
        agents,
        size,
        rate,
        originRate,
        layers: Math.max(1, Number(args.layers)),
        baselineSize,
        warmup:
          args.warmup === ''
            ? Math.max(MiB, Math.floor(size / 4))
            : parseBytes(args.warmup, '--warmup'),
        log,
      });
      result = swarm.summary;
      if (args.kraken !== '') {
        // Kraken runs alone: Shoal's processes are stopped first.
        await stopAll();
        const kraken = await runKraken({
          dir: args.kraken,
          agents,
          size,
          rate,
          originRate,
          workBase: base,
          log,
        });
        result = { ...swarm.summary, kraken };
        printRows([
          ['Shoal', swarm.row],
          ...(kraken === undefined ? [] : [['Kraken v0.1.27', kraken] as [string, SwarmRow]]),
        ]);
      }
    }
    if (args.json) process.stdout.write(`${JSON.stringify(result)}\n`);
  } finally {
    await stopAll();
    rmSync(dir, { recursive: true, force: true });
  }
};

main().catch(async (error: unknown) => {
  process.stderr.write(`${(error as Error).stack ?? String(error)}\n`);
  for (let c = (error as { cause?: unknown }).cause; c !== undefined;) {
    process.stderr.write(`cause: ${String(c)}\n`);
    c = (c as { cause?: unknown }).cause;
  }
  for (const warning of childWarnings()) process.stderr.write(`${warning}\n`);
  await stopAll();
  process.exitCode = 1;
});

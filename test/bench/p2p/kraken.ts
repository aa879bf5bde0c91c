import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { join } from 'node:path';
import type { SwarmRow } from './swarm';
import { swarmBound } from './swarm';
import { MiB, quantile } from './processes';

/*
 * Kraken's swarm beside Shoal's, in the same run: `DIR/run.sh N SIZE_MIB RATE_MIBPS
 * THROTTLE_ORIGIN` (DIR holds Kraken v0.1.27's bin/{agent,origin,tracker} and its runner)
 * starts Kraken's origin, tracker and N agents on loopback with its own bandwidth limiter, has every agent fetch one blob, and reports
 * per-agent times, CPU per delivered byte and pieces sent by the origin.
 */

export type KrakenOptions = {
  readonly dir: string;
  readonly agents: number;
  readonly size: number;
  readonly rate: number;
  readonly originRate: number;
  /** Where Kraken keeps its data (tmpfs, like Shoal's). */
  readonly workBase: string;
  readonly log: (line: string) => void;
};

/** Kraken's piece length (its origin's `metainfogen.piece_lengths`, run.sh: 4 MiB). */
const krakenPieceLength = 4 * MiB;

const portFree = (port: number) =>
  new Promise<boolean>((done) => {
    const server = createServer();
    server.once('error', () => done(false));
    server.listen(port, '127.0.0.1', () => server.close(() => done(true)));
  });

/** A port base whose ports run.sh uses (origin, tracker, 3 per agent) are all free. */
const freePortBase = async (agents: number): Promise<number> => {
  for (let base = 23000; base < 60000; base += 1000) {
    const ports = [base + 1, base + 2, base + 3, base + 4];
    for (let i = 1; i <= agents; i += 1)
      ports.push(...[0, 1, 2].map((j) => base + 100 + 10 * i + j));
    const free = await Promise.all(ports.map(portFree));
    if (free.every(Boolean)) return base;
  }
  throw new Error('no free port block for Kraken');
};

/** The reason Kraken cannot run this scenario, or undefined when it can. */
const unsupported = (options: KrakenOptions): string | undefined => {
  const { dir, agents, size, rate, originRate } = options;
  const binaries = ['agent', 'origin', 'tracker'].map((b) => join(dir, 'bin', b));
  if (!existsSync(join(dir, 'run.sh')) || !binaries.every((b) => existsSync(b))) {
    return `${dir} has no run.sh and bin/{agent,origin,tracker}`;
  }
  if (size % MiB !== 0 || rate % MiB !== 0) {
    return 'run.sh takes whole MiB for the size and the rate';
  }
  if (rate === 0) return 'run.sh needs a rate (0 turns its limiter off)';
  if (agents > 89) return 'run.sh has ports for at most 89 agents';
  if (originRate !== rate && originRate < rate) {
    return 'run.sh caps the origin at the agents’ rate or not at all';
  }
  return undefined;
};

export const runKraken = async (options: KrakenOptions): Promise<SwarmRow | undefined> => {
  const { dir, agents, size, rate, originRate, log } = options;
  const why = unsupported(options);
  if (why !== undefined) {
    log(`Kraken comparison skipped: ${why}.`);
    return undefined;
  }
  // run.sh throttles the origin at the agents' rate, or not at all: an origin faster than
  // the agents runs unthrottled (the bound is F/R either way for these scenarios).
  const throttleOrigin = originRate === rate ? 1 : 0;
  const work = mkdtempSync(join(options.workBase, 'kraken-'));
  const base = await freePortBase(agents);
  log(
    `Kraken v0.1.27 (${join(dir, 'run.sh')} ${agents} ${size / MiB} ${rate / MiB} ` +
      `${throttleOrigin}; origin ${throttleOrigin ? 'at the agents’ rate' : 'unthrottled'})…`,
  );
  try {
    const output = await new Promise<string>((done, fail) => {
      const child = spawn(
        'bash',
        [
          join(dir, 'run.sh'),
          String(agents),
          String(size / MiB),
          String(rate / MiB),
          String(throttleOrigin),
        ],
        {
          env: { ...process.env, KRAKEN_WORK: work, KRAKEN_PORT_BASE: String(base) },
          stdio: ['ignore', 'pipe', 'pipe'],
        },
      );
      let text = '';
      child.stdout.on('data', (d: Buffer) => (text += d.toString()));
      child.stderr.on('data', (d: Buffer) => (text += d.toString()));
      child.once('error', fail);
      child.once('exit', (code) =>
        code === 0 ? done(text) : fail(new Error(`run.sh exited ${code}:\n${text.slice(-3000)}`)),
      );
    });
    return parse(output, options, throttleOrigin === 1 ? originRate : Infinity);
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
};

const parse = (output: string, options: KrakenOptions, originRate: number): SwarmRow => {
  const { agents, size, rate, log } = options;
  const times: number[] = [];
  for (const m of output.matchAll(/^agent\d+\s+(\d+)\s+([\d.]+)\s+([\d.]+)\s+(\d+)\s+(\w+)/gm)) {
    if (m[1] !== '200' || m[5] !== 'yes') throw new Error(`Kraken: an agent failed: ${m[0]}`);
    times.push(Number(m[2]));
  }
  if (times.length !== agents)
    throw new Error(`Kraken: ${times.length} of ${agents} agents:\n${output}`);
  times.sort((a, b) => a - b);
  const cpu = Number(/CPU ns per delivered byte: ([\d.]+)/.exec(output)?.[1]);
  const pieces = Number(/pieces received from origin[^:]*: (\d+)/.exec(output)?.[1] ?? NaN);
  const bound = swarmBound(agents, size, rate, originRate);
  const row = {
    p50: quantile(times, 0.5),
    p99: agents <= 100 ? (times[times.length - 1] as number) : quantile(times, 0.99),
    bound,
    originEgress: Math.min(pieces * krakenPieceLength, pieces * size) / size,
    cpuNsPerByte: cpu,
  };
  log(
    `Kraken: per agent (s, time to the agent server's answer = P2P done): ` +
      times.map((t) => t.toFixed(2)).join(' '),
  );
  log(
    `Kraken: bound ${bound.toFixed(2)} s (configured rates), origin sent ≈ ` +
      `${pieces} × 4 MiB pieces`,
  );
  return row;
};

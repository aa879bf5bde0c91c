import { benchArgs } from '../bench/args';
import { formatReport, runSoak, soakDefaults } from './soak';

// `npm run chaos -- --minutes M --seed S [--json]`: a fleet of Shoal processes on this machine
// under load and seeded faults, then a check of the history. See test/chaos/soak.ts.

const usage = `Usage: npm run chaos -- [options]

Starts a fleet as separate processes on this machine (3 Kafka nodes, an S3 server, cluster A:
3 origins, 2 build-index, 2 proxies, 2 trackers, 8 agents; cluster B replicating from A by
rule), runs a bounded load and seeded faults (kill -9, SIGSTOP, a broker killed, the backend
stopped, a full disk, a network partition) for M minutes, heals, and checks the history:
nothing acknowledged lost, no wrong bytes, no stale read-your-writes read, replication
converged, replay --verify equal, R copies of every blob. Exits 1 when anything did not hold.
Needs root for the full-disk and partition faults (else they are reported NOT injected).

Options:
  --minutes M         load and faults for M minutes            [${soakDefaults.minutes}]
  --seed S            seed of the load and the faults          [${soakDefaults.seed}]
  --rate R            operations per second, all workers       [${soakDefaults.rate}]
  --workers W         concurrent clients                       [${soakDefaults.workers}]
  --agents N          agents ("hosts") in cluster A            [${soakDefaults.agents}]
  --gap LO-HI         seconds between faults                   [10-30]
  --converge S        seconds replication may take after faults [${soakDefaults.convergeMs / 1000}]
  --keep              keep the run directory even when it passed
  --json              print the report as JSON on stdout
  -h, --help          this text`;

const args = benchArgs(
  'chaos',
  {
    minutes: { type: 'string' },
    seed: { type: 'string' },
    rate: { type: 'string' },
    workers: { type: 'string' },
    agents: { type: 'string' },
    gap: { type: 'string' },
    converge: { type: 'string' },
    keep: { type: 'boolean' },
    json: { type: 'boolean' },
  },
  usage,
);

const number = (name: string, value: string | undefined, fallback: number): number => {
  if (value === undefined) return fallback;
  const n = Number(value);
  if (!Number.isFinite(n) || n <= 0) {
    process.stderr.write(
      `chaos: --${name} must be a positive number, not "${value}"\n\n${usage}\n`,
    );
    process.exit(2);
  }
  return n;
};

const gap = ((): [number, number] => {
  if (args.gap === undefined) return [...soakDefaults.gapMs];
  const match = /^(\d+(?:\.\d+)?)-(\d+(?:\.\d+)?)$/.exec(args.gap);
  if (match === null || Number(match[1]) > Number(match[2])) {
    process.stderr.write(`chaos: --gap must be LO-HI seconds (e.g. 10-30), not "${args.gap}"\n`);
    process.exit(2);
  }
  return [Number(match[1]) * 1000, Number(match[2]) * 1000];
})();

const log = (line: string) => process.stderr.write(`${line}\n`);

runSoak({
  minutes: number('minutes', args.minutes, soakDefaults.minutes),
  seed: Math.floor(number('seed', args.seed, soakDefaults.seed)),
  rate: number('rate', args.rate, soakDefaults.rate),
  workers: Math.floor(number('workers', args.workers, soakDefaults.workers)),
  agents: Math.floor(number('agents', args.agents, soakDefaults.agents)),
  gapMs: gap,
  convergeMs: number('converge', args.converge, soakDefaults.convergeMs / 1000) * 1000,
  healMs: soakDefaults.healMs,
  keep: args.keep === true,
  log,
})
  .then((report) => {
    if (args.json === true) process.stdout.write(`${JSON.stringify(report, null, 2)}\n`);
    else process.stdout.write(`${formatReport(report)}\n`);
    process.exitCode = report.passed ? 0 : 1;
  })
  .catch((error: unknown) => {
    process.stderr.write(`chaos: ${(error as Error).stack ?? String(error)}\n`);
    process.exitCode = 1;
  });

/**
 * `npm run sim -- --scenario NAME [--hosts N] [--seed S] [--json] [--out DIR]`
 * `npm run sim -- --plot OUT.svg RESULT.json…` (the CDFs of earlier runs in one plot)
 *
 * Runs a scenario in the simulator (test/sim): the real scheduler, tracker policy and seeder
 * settings on a simulated network. Prints the per-host completion percentiles, η against
 * the bound (Kumar–Ross plus the piece pipeline term), origin egress ÷ size and duplicate
 * bytes, events per second and peak RSS; writes `<scenario>-<hosts>-<seed>.json` and a CDF
 * plot (`.svg`) into `--out` (default `sim-results/`). Scenarios: kraken, fleet, rolling,
 * churn, slow, huge, zones, calibration. `--step MS` and `--allocation exact|iterative`
 * change the network model's step and max-min solver (to check the model's sensitivity).
 */
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { basename, join } from 'node:path';
import { parseArgs } from 'node:util';
import type { Summary } from './metrics';
import { cdfSvg } from './plot';
import type { SimResult } from './run';
import { runScenario } from './run';
import type { ScenarioName } from './scenarios';
import { scenarioNames, scenarios } from './scenarios';

const usage = `usage: npm run sim -- [--scenario NAME] [--hosts N] [--seed S] [--json] [--out DIR]
                    [--step MS] [--allocation exact|iterative]
       npm run sim -- --plot OUT.svg RESULT.json…

  --scenario NAME   ${scenarioNames.join(', ')} (default kraken)
  --hosts N         hosts to simulate (default: the scenario's)
  --seed S          seed of every random choice (default 1): a run is reproducible
  --json            print the result as JSON on stdout (the report goes to stderr)
  --out DIR         where <scenario>-<hosts>-<seed>.json and .svg go (default sim-results)
  --step MS         the network model's step (default 5 ms)
  --allocation A    the max-min solver: exact or iterative (default: the scenario's)
  --plot OUT.svg    draw the CDFs of earlier JSON results into one plot
  --help            this text`;

const parsed = (() => {
  try {
    return parseArgs({
      allowPositionals: true,
      options: {
        scenario: { type: 'string', default: 'kraken' },
        hosts: { type: 'string' },
        seed: { type: 'string', default: '1' },
        json: { type: 'boolean', default: false },
        out: { type: 'string', default: 'sim-results' },
        step: { type: 'string' },
        allocation: { type: 'string' },
        plot: { type: 'string' },
        help: { type: 'boolean', default: false },
      },
    });
  } catch (error) {
    process.stderr.write(`sim: ${(error as Error).message}\n\n${usage}\n`);
    process.exit(2);
  }
})();
const { values: args, positionals } = parsed;
if (args.help) {
  process.stdout.write(`${usage}\n`);
  process.exit(0);
}

/** A positive number from an option, or a clear error naming it. */
const numberOption = (name: string, text: string, integer: boolean): number => {
  const value = Number(text);
  if (!Number.isFinite(value) || value <= 0 || (integer && !Number.isInteger(value))) {
    throw new Error(`--${name}: a positive ${integer ? 'integer' : 'number'}; got "${text}"`);
  }
  return value;
};

const say = (line: string) => (args.json ? process.stderr : process.stdout).write(`${line}\n`);
const s = (seconds: number) => `${seconds.toFixed(2)} s`;
const f2 = (x: number) => x.toFixed(2);

/** Kraken's published figures (README): p50 10 s, p99 18 s, p99.9 22 s against 10 s. */
const kraken = { p50: 10, p99: 18, p999: 22, bound: 10 };

const describe = (label: string, sum: Summary) =>
  `${label.padEnd(9)} p50 ${s(sum.p50)}  p99 ${s(sum.p99)}  p99.9 ${s(sum.p999)}  ` +
  `max ${s(sum.max)}   η p50 ${f2(sum.etaP50)}  p99 ${f2(sum.etaP99)}  ` +
  `p99.9 ${f2(sum.etaP999)}   (${sum.finished}/${sum.hosts} done)`;

const report = (r: SimResult) => {
  const GiB = 1024 ** 3;
  say(`\n${r.scenario}: ${r.description}`);
  say(
    `  ${r.hosts} hosts, seed ${r.seed}; layers ${r.parameters.layers
      .map((b) => `${(b / GiB).toFixed(2)} GiB`)
      .join(' + ')}, pieces ${(r.parameters.pieceLength / 1024 / 1024).toFixed(2)} MiB; ` +
      `${r.parameters.servingOrigins} of ${r.parameters.origins} origins hold the layers`,
  );
  say(
    `  bound per host ${s(r.bound.bound)} = Kumar–Ross ${s(r.bound.fluid)} + pipeline ` +
      `${s(r.bound.pipeline)}`,
  );
  say(`  ${describe('healthy', r.healthy)}`);
  if (r.impaired !== undefined) say(`  ${describe('impaired', r.impaired)}`);
  if (r.scenario === 'kraken') {
    say(
      `  Kraken    p50 ${s(kraken.p50)}  p99 ${s(kraken.p99)}  p99.9 ${s(kraken.p999)}` +
        `   η p50 ${f2(kraken.bound / kraken.p50)}  p99 ${f2(kraken.bound / kraken.p99)}  ` +
        `p99.9 ${f2(kraken.bound / kraken.p999)}  (published; bound 10 s)`,
    );
  }
  say(
    `  origin egress ${f2(r.originEgressRatio)} × size   duplicate bytes ` +
      `${(r.duplicateBytes / GiB).toFixed(2)} GiB (${(r.duplicateRatio * 100).toFixed(2)} %)` +
      (r.interZoneShare > 0 ? `   across zones ${(r.interZoneShare * 100).toFixed(1)} %` : ''),
  );
  say(
    `  simulated ${s(r.simulatedSeconds)} in ${s(r.wallSeconds)} wall: ` +
      `${Math.round(r.eventsPerSecond).toLocaleString('en')} events/s ` +
      `(${r.events.toLocaleString('en')} at ${(r.instants ?? 0).toLocaleString('en')} instants), peak RSS ${r.peakRssMiB.toFixed(0)} MiB, ` +
      `${r.trackerAnnounces.toLocaleString('en')} announces`,
  );
};

const plotResults = async (out: string, files: string[]) => {
  const results = files.map((file) => JSON.parse(readFileSync(file, 'utf8')) as SimResult);
  const svg = await cdfSvg({
    title: 'Completion time per host (simulated)',
    series: results.map((r) => ({
      name: `${r.scenario}, ${r.hosts.toLocaleString('en')} hosts`,
      times: r.times,
      hosts: r.healthy.hosts,
    })),
    bounds: [
      { name: 'bound', seconds: Math.max(...results.map((r) => r.bound.bound)) },
      ...(results.some((r) => r.scenario === 'kraken')
        ? [
            { name: 'Kraken p50', seconds: kraken.p50 },
            { name: 'Kraken p99', seconds: kraken.p99 },
          ]
        : []),
    ],
  });
  writeFileSync(out, svg);
  say(`wrote ${out}`);
};

const main = async () => {
  if (args.plot !== undefined) {
    await plotResults(args.plot, positionals);
    return;
  }
  const name = args.scenario as ScenarioName;
  if (!scenarioNames.includes(name)) {
    throw new Error(`--scenario: one of ${scenarioNames.join(', ')}; got "${name}"`);
  }
  const hosts =
    args.hosts === undefined
      ? scenarios[name].defaultHosts
      : numberOption('hosts', args.hosts, true);
  const seed = numberOption('seed', args.seed, true);
  const stepMs = args.step === undefined ? undefined : numberOption('step', args.step, false);
  if (args.allocation !== undefined && !['exact', 'iterative'].includes(args.allocation)) {
    throw new Error(`--allocation: exact or iterative; got "${args.allocation}"`);
  }
  say(`simulating ${name} with ${hosts} hosts (seed ${seed}) …`);
  const result = await runScenario({
    scenario: name,
    hosts,
    seed,
    progress: say,
    tune: (world) => ({
      ...world,
      network: {
        ...world.network,
        ...(stepMs !== undefined && { stepMs }),
        ...(args.allocation !== undefined && {
          allocation: args.allocation as 'exact' | 'iterative',
        }),
      },
    }),
  });
  report(result);
  mkdirSync(args.out, { recursive: true });
  const stem = join(args.out, `${name}-${hosts}-${seed}`);
  writeFileSync(`${stem}.json`, `${JSON.stringify(result)}\n`);
  const svg = await cdfSvg({
    title: `${name}: ${hosts.toLocaleString('en')} hosts (simulated)`,
    series: [
      { name: 'healthy hosts', times: result.times, hosts: result.healthy.hosts },
      ...(result.impairedTimes.length > 0
        ? [
            {
              name: 'impaired hosts',
              times: result.impairedTimes,
              hosts: result.impaired?.hosts ?? result.impairedTimes.length,
            },
          ]
        : []),
    ],
    bounds: [{ name: 'bound', seconds: result.bound.bound }],
  });
  writeFileSync(`${stem}.svg`, svg);
  say(`wrote ${basename(stem)}.json and .svg in ${args.out}/`);
  if (args.json) process.stdout.write(`${JSON.stringify({ ...result, times: undefined })}\n`);
};

main().catch((error: unknown) => {
  process.stderr.write(`sim: ${(error as Error).message ?? String(error)}\n`);
  process.exitCode = 1;
});

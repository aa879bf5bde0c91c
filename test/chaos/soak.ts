import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Report } from './checker';
import { check } from './checker';
import { createFaults } from './faults';
import { startFleet } from './fleet';
import { createLoad } from './load';
import { delay } from './processes';

// One soak: the fleet up, load and faults for `minutes`, faults stopped (the last one healed),
// load stopped, then the checker. Used by `npm run chaos` (test/chaos/main.ts) and by the short
// soak in `npm test` (test/chaos/chaosSoak.e2e.spec.ts).

export type SoakOptions = {
  readonly minutes: number;
  readonly seed: number;
  readonly workers: number;
  readonly rate: number;
  readonly agents: number;
  readonly gapMs: readonly [number, number];
  readonly convergeMs: number;
  readonly healMs: number;
  /** Keep the run directory (configs, every process's log, the history) even when it passed. */
  readonly keep: boolean;
  readonly log: (line: string) => void;
};

export const soakDefaults = {
  minutes: 5,
  seed: 1,
  workers: 4,
  rate: 3,
  agents: 8,
  gapMs: [10_000, 30_000] as const,
  convergeMs: 120_000,
  healMs: 120_000,
};

export const runSoak = async (options: SoakOptions): Promise<Report & { dir: string }> => {
  const { log } = options;
  const dir = mkdtempSync(join(tmpdir(), 'shoal-soak-'));
  log(`run directory ${dir}`);
  const started = Date.now();
  const fleet = await startFleet({ dir, agents: options.agents, log }).catch((error: unknown) => {
    log(`the fleet did not start; its logs are in ${dir}/logs`);
    throw error;
  });
  let report: Report | undefined;
  const faults = createFaults(fleet, { seed: options.seed, gapMs: options.gapMs, log });
  try {
    log(
      `fleet up in ${((Date.now() - started) / 1000).toFixed(0)} s; load and faults for ${options.minutes} min`,
    );
    const load = createLoad({
      seed: options.seed,
      workers: options.workers,
      rate: options.rate,
      repos: 4,
      tagsPerRepo: 4,
      proxies: () => fleet.a.proxies.map((p) => p.url),
      agents: () => fleet.a.agents.map((a) => a.url),
      attemptMs: 30_000,
      opMs: 60_000,
    });
    load.start();
    faults.start();
    const until = Date.now() + options.minutes * 60_000;
    while (Date.now() < until) {
      await delay(Math.min(30_000, until - Date.now()));
      const done = load.history.filter((op) => op.end > 0);
      const ok = done.filter((op) => op.outcome === 'ok').length;
      log(
        `  ${((Date.now() - started) / 60_000).toFixed(1)} min: ${done.length} operations, ` +
          `${ok} ok; ${faults.faults.length} faults`,
      );
    }
    log('stopping the faults (the one under way heals first), then the load…');
    await faults.stop();
    await load.stop();
    const faultsEnded = Date.now();
    for (const m of fleet.members) {
      if (!fleet.isUp(m)) {
        log(`  ${m.name} is down after the faults: starting it`);
        await fleet.start(m);
      }
    }
    writeFileSync(join(dir, 'history.json'), JSON.stringify(load.history));
    writeFileSync(join(dir, 'faults.json'), JSON.stringify(faults.faults));
    report = await check({
      fleet,
      history: load.history,
      manifestDigests: load.manifestDigests(),
      faults: faults.faults,
      seed: options.seed,
      minutes: options.minutes,
      faultsEnded,
      convergeMs: options.convergeMs,
      healMs: options.healMs,
      log,
    });
    writeFileSync(join(dir, 'report.json'), JSON.stringify(report, null, 2));
    return { ...report, dir };
  } finally {
    await faults.stop();
    await fleet.stopAll();
    faults.cleanup();
    if (report?.passed === true && !options.keep) rmSync(dir, { recursive: true, force: true });
    else log(`kept ${dir} (configs, logs/, history.json, faults.json, report.json)`);
  }
};

/** The report as a reader wants it. */
export const formatReport = (report: Report & { dir: string }): string => {
  const lines: string[] = [];
  const kinds = Object.entries(report.operations.byKind)
    .map(([kind, c]) => `${kind} ${c.ok}/${(c.ok ?? 0) + (c.fail ?? 0) + (c.info ?? 0)}`)
    .join(', ');
  const faults = Object.entries(report.faults)
    .map(
      ([kind, f]) =>
        `${kind} ${f.injected}${f.skipped > 0 ? ` (+${f.skipped} NOT injected: ${f.why})` : ''}`,
    )
    .join(', ');
  lines.push(
    `soak ${report.passed ? 'PASSED' : 'FAILED'}: seed ${report.seed}, ${report.minutes} min`,
    `  operations  ${report.operations.total} (ok/all: ${kinds})`,
    `  faults      ${faults}`,
    `  lost ${report.lost}, corrupt ${report.corrupt}, stale ${report.stale}, ` +
      `referrers missing in B ${report.missingReferrers}, under-replicated ${report.underReplicated} ` +
      `(owner copies evicted under disk pressure, written back: ${report.evictedCopies})`,
    `  replication converged ${report.convergedSeconds === null ? 'NOT' : `${report.convergedSeconds} s`} after the faults stopped`,
    `  replay --verify ${Object.entries(report.replay)
      .map(([name, ok]) => `${name} ${ok ? 'equal' : 'DIFFERENT'}`)
      .join(', ')}`,
    `  availability ${(report.availability.whileFaulted * 100).toFixed(1)} % of ` +
      `${report.availability.opsWhileFaulted} operations while faults ran, ` +
      `${(report.availability.overall * 100).toFixed(1)} % overall; ${report.availability.retried} ` +
      `needed a retry; while faulted p50 ${report.availability.p50MsWhileFaulted} ms, ` +
      `p99 ${report.availability.p99MsWhileFaulted} ms`,
  );
  for (const problem of report.problems.slice(0, 40)) lines.push(`  ! ${problem}`);
  return lines.join('\n');
};

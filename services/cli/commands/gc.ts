import type { Command } from 'commander';
import { formatBytes, formatDuration, orThrow, parseDuration } from '../../../domain';
import type { GcCounts, GcReport } from '../../gc/client/gcApi';
import { createGcClient } from '../../gc/client/gcClient';
import type { GcProgress } from '../../gc/main';
import { GcConfigSchema } from '../../gc/config';
import { createGcService, gcProjections } from '../../gc/main';
import { systemClock } from '../../shared/clock';
import { validateConfig } from '../../shared/config';
import { createProjectionRunner } from '../../shared/projectionRunner';
import type { Progress, ProgressMode } from '../../shared/progress';
import { createProgress, progressMode } from '../../shared/progress';
import { note, print, printJson } from '../output';
import type { GlobalOptions } from './common';
import { addConfigOption, addDataDirOption, stateConfigOf, withState } from './common';

type GcOptions = GlobalOptions & {
  url?: string;
  json?: boolean;
  dryRun?: boolean;
  grace?: string;
  batchSize?: string;
};

const defaults = validateConfig(GcConfigSchema, {});

/**
 * GC's phases as progress (the shared reporter: a bar on a terminal, JSON lines on stderr
 * with --json, nothing when piped): one bar per phase, labelled `gc <phase>`.
 */
const phaseProgress = (mode: ProgressMode) => {
  let current: { phase: string; progress: Progress } | undefined;
  return {
    show: (p: GcProgress) => {
      if (p.phase === 'snapshot') return;
      if (current?.phase !== p.phase) {
        current?.progress.stop();
        current = {
          phase: p.phase,
          progress: createProgress({ label: `gc ${p.phase}`, unit: p.phase, total: p.total, mode }),
        };
      }
      current.progress.setTotal(p.total);
      current.progress.update(p.done);
    },
    end: () => current?.progress.stop(),
  };
};

const countsRow = (name: string, c: GcCounts) =>
  [name, c.tags, c.manifests, c.blobs, c.links, formatBytes(c.bytes)].join('\t');

const printReport = (report: GcReport) => {
  const verb = report.dryRun ? 'would remove' : 'removed';
  print(
    `gc ${report.run}${report.dryRun ? ' (dry run)' : ''} at position ${report.position}, ` +
      `grace ${formatDuration(report.graceMs)}: examined ${report.examined.manifests} ` +
      `manifests, ${report.examined.blobs} blobs (${formatBytes(report.examined.bytes)}) in ` +
      `${report.ms} ms`,
  );
  print(
    `${verb} ${report.removed.tags} tags, ${report.removed.manifests} manifests, ` +
      `${report.removed.blobs} blobs (${formatBytes(report.removed.bytes)}), ` +
      `${report.removed.links} links${report.skipped > 0 ? `; ${report.skipped} left for the next run (a push came first)` : ''}`,
  );
  if (report.stopped !== undefined) print(`stopped early: ${report.stopped}`);
  const repos = Object.entries(report.repositories).sort(([a], [b]) => (a < b ? -1 : 1));
  if (repos.length > 0) {
    print(['REPOSITORY', 'TAGS', 'MANIFESTS', 'BLOBS', 'LINKS', 'BYTES'].join('\t'));
    for (const [repo, counts] of repos) print(countsRow(repo, counts));
  }
  const rules = Object.entries(report.rules);
  if (rules.length > 0) {
    print(['RULE', 'TAGS', 'MANIFESTS', 'BLOBS', 'LINKS', 'BYTES'].join('\t'));
    for (const [rule, counts] of rules) print(countsRow(rule, counts));
  }
};

export const registerGcCommands = (program: Command): void => {
  const gc = program
    .command('gc')
    .description('garbage collection: untagged manifests, unreferenced blobs, retention rules');

  addConfigOption(addDataDirOption(gc.command('run')))
    .description(
      'run GC now: tags retention rules do not keep, untagged manifests and unreferenced ' +
        'blobs older than the grace window; --dry-run prints what would go, per repository',
    )
    .option('--dry-run', 'decide and report; remove nothing')
    .option(
      '--grace <duration>',
      `keep what is younger (default ${formatDuration(defaults.graceMs)})`,
    )
    .option(
      '--batch-size <n>',
      `removals between progress reports and waits for the projections (default ${defaults.batchSize})`,
    )
    .option('--url <url>', 'run in a running build-index instead of on the data directory')
    .option('--json', 'print the report as JSON (with every removed item and its reason)')
    .action(async (options: GcOptions) => {
      const graceMs =
        options.grace === undefined ? undefined : orThrow(parseDuration(options.grace));
      const request = {
        dryRun: options.dryRun === true,
        ...(graceMs !== undefined && { graceMs }),
      };
      const progress = phaseProgress(progressMode({ json: options.json === true }));
      let report: GcReport;
      try {
        if (options.url !== undefined) {
          report = await createGcClient(options.url).run(request);
        } else {
          const { cluster } = stateConfigOf(options);
          report = await withState(options, !request.dryRun, async ({ log, store }) => {
            const runner = createProjectionRunner({ log, store, projections: gcProjections });
            const service = createGcService({
              config: {
                graceMs: defaults.graceMs,
                batchSize:
                  options.batchSize === undefined ? defaults.batchSize : Number(options.batchSize),
              },
              cluster,
              actor: 'cli',
              log,
              store,
              clock: systemClock,
              sync: () => runner.catchUp(),
              onProgress: progress.show,
            });
            return service.run(request);
          });
        }
      } finally {
        progress.end();
      }
      if (options.json === true) printJson(report);
      else printReport(report);
      if (report.stopped !== undefined) note(`gc: ${report.stopped}; run again to continue`);
    });
};

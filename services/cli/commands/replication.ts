import type { Command } from 'commander';
import { replicationProjection } from '../../../projections';
import type { ReplicationApi, RuleStatus } from '../../replicator/client/replicationApi';
import { createReplicationClient } from '../../replicator/client/replicationClient';
import { createReplicationService } from '../../replicator/main';
import { systemClock } from '../../shared/clock';
import { createProjectionRunner } from '../../shared/projectionRunner';
import { print, printJson } from '../output';
import type { GlobalOptions } from './common';
import { addConfigOption, addDataDirOption, stateConfigOf, withState } from './common';
import type { ClientIdentityOptions } from './clientIdentity';
import { addClientIdentityOptions, clientIdentityOf } from './clientIdentity';

export type ReplicationOptions = GlobalOptions &
  ClientIdentityOptions & { url?: string; json?: boolean };

/** `--data-dir`, `--config`, `--url` and `--json`, as every rules/replication command takes. */
export const replicationOptions = (command: Command): Command =>
  addClientIdentityOptions(
    addConfigOption(addDataDirOption(command))
      .option(
        '--url <url>',
        'talk to a running build-index (or shoal replicator) instead of the data directory',
      )
      .option('--json', 'print JSON'),
  );

/**
 * Runs `fn` with a ReplicationApi: over HTTP with `--url`, else on the data directory's log
 * (the replication projection is brought up to date first). On the data directory, status
 * shows what is recorded on the log; a running build-index or replicator (`--url`) adds what
 * its replicator is doing right now.
 */
export const withReplication = async <T>(
  options: ReplicationOptions,
  write: boolean,
  fn: (api: ReplicationApi) => Promise<T>,
): Promise<T> => {
  if (options.url !== undefined) {
    return fn(createReplicationClient(options.url, { identity: clientIdentityOf(options) }));
  }
  const { cluster } = stateConfigOf(options);
  return withState(options, write, async ({ log, store }) => {
    const runner = createProjectionRunner({ log, store, projections: [replicationProjection] });
    await runner.catchUp();
    return fn(
      createReplicationService({
        log,
        store,
        writer: { clock: systemClock, cluster, actor: 'cli' },
        clock: systemClock,
        waitFor: async () => {
          await runner.catchUp();
        },
      }),
    );
  });
};

const seconds = (s: number) => (s < 10 ? s.toFixed(1) : String(Math.round(s)));

const row = (rule: RuleStatus): string =>
  [
    rule.id,
    rule.destination,
    rule.state,
    rule.settled,
    rule.lag.positions,
    seconds(rule.lag.seconds),
    rule.replicated,
    rule.skipped,
    rule.failures.consecutive > 0
      ? `${rule.failures.total} (${rule.failures.consecutive} in a row)`
      : String(rule.failures.total),
    rule.failures.consecutive > 0 && rule.failures.last
      ? `${rule.failures.last.error.slice(0, 120)}${
          rule.failures.last.retryAt ? ` (retry at ${rule.failures.last.retryAt})` : ''
        }`
      : '-',
  ].join('\t');

export const registerReplicationCommands = (program: Command): void => {
  const replication = program.command('replication').description('replication status');

  replicationOptions(replication.command('status'))
    .description(
      'per rule: replicated position, lag (log positions and seconds), failures; with --url the ' +
        "running replicator's view, else what the data directory's log records",
    )
    .option('--min-position <n>', 'wait until the build-index has applied this position')
    .action(async (options: ReplicationOptions & { minPosition?: string }) => {
      const status = await withReplication(options, false, (api) =>
        api.status(
          options.minPosition === undefined ? {} : { minPosition: Number(options.minPosition) },
        ),
      );
      if (options.json) {
        printJson(status);
        return;
      }
      print(`head ${status.head}, replicator ${status.replicator}, at ${status.at}`);
      print(
        [
          'RULE',
          'DESTINATION',
          'STATE',
          'POSITION',
          'LAG',
          'LAG(S)',
          'REPLICATED',
          'SKIPPED',
          'FAILURES',
          'LAST ERROR',
        ].join('\t'),
      );
      for (const rule of status.rules) print(row(rule));
    });
};

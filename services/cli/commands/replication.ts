import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Command } from 'commander';
import { replicationProjection } from '../../../projections';
import type {
  ReplicationApi,
  ReplicationStatus,
  RuleStatus,
} from '../../replicator/client/replicationApi';
import { createReplicationClient } from '../../replicator/client/replicationClient';
import { createReplicationService, liveLeaseHolder } from '../../replicator/main';
import { systemClock } from '../../shared/clock';
import { createProjectionRunner } from '../../shared/projectionRunner';
import { replicatorLeaseHolder } from '../compose';
import { print, printJson, table } from '../output';
import { callRemote, replicationService, serviceUrl } from '../remote';
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
    const url = serviceUrl(options.url, replicationService);
    return callRemote(url, replicationService, () =>
      fn(createReplicationClient(url, { identity: clientIdentityOf(options) })),
    );
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

/** The replicator's lease unless configured otherwise (replication.lock.leaseMs). */
const defaultLeaseMs = 15_000;

/** The build-index address `shoal dev` wrote to `<dataDir>/endpoints.json`, if any. */
const buildIndexOf = (dataDir: string): string | undefined => {
  try {
    const endpoints = JSON.parse(readFileSync(join(dataDir, 'endpoints.json'), 'utf8')) as {
      buildIndex?: unknown;
    };
    return typeof endpoints.buildIndex === 'string' ? endpoints.buildIndex : undefined;
  } catch {
    return undefined;
  }
};

const seconds = (s: number) => (s < 10 ? s.toFixed(1) : String(Math.round(s)));

const cells = (rule: RuleStatus) => [
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
    : rule.failures.total,
];

/** `rule r1 is stuck on team/app:v1 (position 12, attempt 7): <error>; next try at …`. */
const stuckLine = (rule: RuleStatus): string | undefined => {
  const last = rule.failures.last;
  if (rule.failures.consecutive === 0 || last === undefined) return undefined;
  return (
    `rule ${rule.id} is stuck on ${last.repo}:${last.tag} (position ${last.sourcePosition}, ` +
    `attempt ${last.attempt}): ${last.error.slice(0, 300)}` +
    (last.retryAt !== undefined ? `; next try at ${last.retryAt}` : '; given up')
  );
};

/**
 * On the data directory, status reads what the log records; a replicator running beside it
 * (in shoal dev, a build-index or shoal replicator) holds `<dataDir>/replicator.lock`, or, on
 * a Kafka log, the group `shoal-replicator.<cluster>` (on whatever host it runs). Then
 * the live view is asked of it (the build-index in endpoints.json), or, failing that, the
 * answer says a replicator runs and that the positions are the recorded ones.
 */
const statusOnDataDir = async (
  options: ReplicationOptions,
  read: (api: ReplicationApi) => Promise<ReplicationStatus>,
): Promise<{ status: ReplicationStatus; note?: string }> => {
  const { dataDir, log, cluster } = stateConfigOf(options);
  // On Kafka the lease is a consumer group (replicators on any host); else a file here.
  const holder =
    log.adapter === 'kafka'
      ? await replicatorLeaseHolder(log, cluster)
      : await liveLeaseHolder(join(dataDir, 'replicator.lock'), defaultLeaseMs);
  if (holder === undefined) return { status: await withReplication(options, false, read) };
  const url = buildIndexOf(dataDir);
  if (url !== undefined) {
    const live = await read(createReplicationClient(url, { timeoutMs: 5000 })).catch(
      () => undefined,
    );
    if (live !== undefined && live.replicator !== 'not-running') {
      return { status: live, note: `the running replicator's view, from ${url}` };
    }
  }
  const recorded = await withReplication(options, false, read);
  return {
    status: {
      ...recorded,
      replicator: 'elsewhere',
      rules: recorded.rules.map((r) => ({
        ...r,
        state: r.state === 'not-running' ? 'elsewhere' : r.state,
      })),
    },
    note:
      `a replicator runs (pid ${holder.pid} on ${holder.host}); positions are those recorded ` +
      'on the log, which trail what it has done: --url <its build-index or replicator> shows ' +
      'its live view',
  };
};

export const registerReplicationCommands = (program: Command): void => {
  const replication = program.command('replication').description('replication status');

  replicationOptions(replication.command('status'))
    .description(
      'per rule: replicated position, lag (log positions and seconds), failures and the tag a ' +
        'rule is stuck on; with --url, or a replicator running on the data directory, the ' +
        "running replicator's view, else what the data directory's log records",
    )
    .option('--min-position <n>', 'wait until the build-index has applied this position')
    .action(async (options: ReplicationOptions & { minPosition?: string }) => {
      const read = (api: ReplicationApi) =>
        api.status(
          options.minPosition === undefined ? {} : { minPosition: Number(options.minPosition) },
        );
      const { status, note } =
        options.url !== undefined
          ? { status: await withReplication(options, false, read), note: undefined }
          : await statusOnDataDir(options, read);
      if (options.json) {
        printJson(status);
        return;
      }
      print(
        `head ${status.head}, replicator ${status.replicator}, at ${status.at}` +
          (note === undefined ? '' : `\n(${note})`),
      );
      print(
        table(
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
          ],
          status.rules.map(cells),
        ),
      );
      for (const rule of status.rules) {
        const line = stuckLine(rule);
        if (line !== undefined) print(line);
      }
    });
};

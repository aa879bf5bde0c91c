import type { Command } from 'commander';
import { setTimeout as delay } from 'node:timers/promises';
import type { Position } from '../../../domain';
import type { ReplicationApi, RuleView } from '../../replicator/client/replicationApi';
import type { Progress } from '../../shared/progress';
import { createProgress, progressMode } from '../../shared/progress';
import { note, print, printJson, table } from '../output';
import type { ReplicationOptions } from './replication';
import { replicationOptions, withReplication } from './replication';

const ruleCells = (rule: RuleView) => [
  rule.id,
  rule.name ?? '-',
  rule.repoPattern,
  rule.tagPattern,
  rule.destination,
  rule.backfill ? 'yes' : 'no',
  rule.removedPosition === undefined ? `${rule.addedPosition}` : `removed@${rule.removedPosition}`,
];

const header = ['ID', 'NAME', 'REPOSITORIES', 'TAGS', 'DESTINATION', 'BACKFILL', 'ADDED'];
const rulesTable = (list: readonly RuleView[]): string => table(header, list.map(ruleCells));

/** How often a waiting `rules add --backfill` asks for the rule's status. */
const backfillPollMs = 250;

/**
 * Follows a backfilling rule until every change before it was added is replicated (or given
 * up), reporting the replicated position against the rule's own. Returns false, at once,
 * when no replicator is active to do it.
 */
const followBackfill = async (
  api: ReplicationApi,
  rule: { id: string; addedPosition: Position },
  progress: Progress,
  local: boolean,
): Promise<boolean> => {
  progress.setTotal(rule.addedPosition);
  try {
    for (;;) {
      // On a data directory, minPosition makes the service catch its projection up first.
      const status = await api.status(local ? { minPosition: 1 } : {});
      if (!local && status.replicator !== 'active') return false;
      const current = status.rules.find((r) => r.id === rule.id);
      if (current === undefined || current.state === 'removed') return true;
      const done = current.pending === undefined || current.pending.position > rule.addedPosition;
      progress.update(done ? rule.addedPosition : Math.min(current.settled, rule.addedPosition));
      if (done) return true;
      await delay(backfillPollMs);
    }
  } finally {
    progress.stop();
  }
};

export const registerRulesCommands = (program: Command): void => {
  const rules = program
    .command('rules')
    .description('replication rules (events on the log): add, list, remove');

  replicationOptions(rules.command('add'))
    .description('replicate matching tags to another registry (appends ReplicationRuleAdded)')
    .requiredOption('--repo <glob>', 'repositories: team/*, team/**, ** (see README)')
    .requiredOption('--to <url>', 'destination registry, e.g. https://registry.example.com')
    .option('--name <name>', 'a name for the rule (unique among active rules)')
    .option('--tag <glob>', 'tags (default: every tag, *)')
    .option('--backfill', 'also replicate the current state of every matching tag')
    .option(
      '--wait',
      'with --backfill: wait until the backfill is replicated, showing progress (the default ' +
        'with --url when its replicator is active)',
    )
    .option('--no-wait', 'return once the rule is added')
    .action(
      async (
        options: ReplicationOptions & {
          repo: string;
          to: string;
          name?: string;
          tag?: string;
          backfill?: boolean;
          wait?: boolean;
        },
      ) => {
        const local = options.url === undefined;
        // On a data directory the CLI cannot tell whether a replicator runs: wait if asked.
        const wait =
          options.backfill === true && (local ? options.wait === true : options.wait !== false);
        const { rule, position, followed } = await withReplication(options, true, async (api) => {
          const added = await api.addRule({
            ...(options.name !== undefined && { name: options.name }),
            repoPattern: options.repo,
            tagPattern: options.tag ?? '*',
            destination: options.to,
            backfill: options.backfill === true,
          });
          if (options.json) printJson(added);
          else
            print(
              `rule ${added.rule.id} added at position ${added.position}\n${rulesTable([added.rule])}`,
            );
          if (wait === false) return { ...added, followed: undefined };
          const progress = createProgress({
            label: `backfill ${added.rule.id}`,
            unit: 'positions',
            mode: progressMode({ json: options.json === true }),
          });
          return { ...added, followed: await followBackfill(api, added.rule, progress, local) };
        });
        if (followed === false) {
          note(`no active replicator at ${options.url}: the backfill runs when one starts`);
        } else if (followed === true && !options.json) {
          note(`rule ${rule.id}: backfill to position ${position} replicated`);
        }
      },
    );

  replicationOptions(rules.command('ls'))
    .description('list replication rules')
    .option('--all', 'include removed rules')
    .action(async (options: ReplicationOptions & { all?: boolean }) => {
      const list = await withReplication(options, false, (api) =>
        api.listRules({ all: options.all === true }),
      );
      if (options.json) {
        printJson({ rules: list });
        return;
      }
      print(rulesTable(list));
    });

  replicationOptions(rules.command('rm').argument('<id>', 'rule id (or name of an active rule)'))
    .description('remove a replication rule (appends ReplicationRuleRemoved)')
    .action(async (id: string, options: ReplicationOptions) => {
      const result = await withReplication(options, true, (api) => api.removeRule(id));
      if (options.json) printJson(result);
      else print(`rule ${result.id} removed at position ${result.position}`);
    });
};

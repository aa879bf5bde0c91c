import type { Command } from 'commander';
import type { RuleView } from '../../replicator/client/replicationApi';
import { print, printJson } from '../output';
import type { ReplicationOptions } from './replication';
import { replicationOptions, withReplication } from './replication';

const describeRule = (rule: RuleView): string =>
  [
    rule.id,
    rule.name ?? '-',
    rule.repoPattern,
    rule.tagPattern,
    rule.destination,
    rule.backfill ? 'yes' : 'no',
    rule.removedPosition === undefined
      ? `${rule.addedPosition}`
      : `removed@${rule.removedPosition}`,
  ].join('\t');

const header = ['ID', 'NAME', 'REPOSITORIES', 'TAGS', 'DESTINATION', 'BACKFILL', 'ADDED'].join(
  '\t',
);

export const registerRulesCommands = (program: Command): void => {
  const rules = program
    .command('rules')
    .description('replication rules (events on the log): add, list, remove');

  replicationOptions(rules.command('add'))
    .description('replicate matching tags to another registry (appends ReplicationRuleAdded)')
    .requiredOption('--repo <glob>', 'repositories: team/*, team/**, ** (see README)')
    .requiredOption('--to <url>', 'destination registry, e.g. https://registry.example.com')
    .option('--name <name>', 'a name for the rule (unique among active rules)')
    .option('--tag <glob>', 'tags (default: every tag)', '*')
    .option('--backfill', 'also replicate the current state of every matching tag')
    .action(
      async (
        options: ReplicationOptions & {
          repo: string;
          to: string;
          name?: string;
          tag: string;
          backfill?: boolean;
        },
      ) => {
        const { rule, position } = await withReplication(options, true, (api) =>
          api.addRule({
            ...(options.name !== undefined && { name: options.name }),
            repoPattern: options.repo,
            tagPattern: options.tag,
            destination: options.to,
            backfill: options.backfill === true,
          }),
        );
        if (options.json) printJson({ rule, position });
        else print(`rule ${rule.id} added at position ${position}: ${describeRule(rule)}`);
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
      print(header);
      for (const rule of list) print(describeRule(rule));
    });

  replicationOptions(rules.command('rm').argument('<id>', 'rule id (or name of an active rule)'))
    .description('remove a replication rule (appends ReplicationRuleRemoved)')
    .action(async (id: string, options: ReplicationOptions) => {
      const result = await withReplication(options, true, (api) => api.removeRule(id));
      if (options.json) printJson(result);
      else print(`rule ${result.id} removed at position ${result.position}`);
    });
};

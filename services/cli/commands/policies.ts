import type { Command } from 'commander';

import { describeKeep, formatBytes, orThrow, parseBytes } from '../../../domain';
import type { RetentionRuleDoc } from '../../../projections';
import { policiesProjection, referencesProjection } from '../../../projections';
import type { PolicyService } from '../../gc/main';
import { createPolicyService } from '../../gc/main';
import { systemClock } from '../../shared/clock';
import { createProjectionRunner } from '../../shared/projectionRunner';
import { print, printJson } from '../output';
import type { GlobalOptions } from './common';
import { addConfigOption, addDataDirOption, stateConfigOf, withState } from './common';

type Options = GlobalOptions & { json?: boolean };

/** Runs `fn` with the policy service on the data directory's (or `--config`'s) log. */
const withPolicies = async <T>(
  options: Options,
  write: boolean,
  fn: (policies: PolicyService) => Promise<T>,
): Promise<T> => {
  const { cluster } = stateConfigOf(options);
  return withState(options, write, async ({ log, store }) => {
    const runner = createProjectionRunner({
      log,
      store,
      projections: [policiesProjection, referencesProjection],
    });
    await runner.catchUp();
    return fn(
      createPolicyService({
        log,
        store,
        writer: { clock: systemClock, cluster, actor: 'cli' },
        waitFor: async () => {
          await runner.catchUp();
        },
      }),
    );
  });
};

const options = (command: Command) =>
  addConfigOption(addDataDirOption(command)).option('--json', 'print JSON');

const describeRule = (rule: RetentionRuleDoc): string =>
  [
    rule.id,
    rule.name ?? '-',
    rule.repoPattern,
    rule.tagPattern,
    describeKeep(rule),
    rule.untagged === true ? 'yes' : 'no',
    (rule.protect ?? []).join(',') || '-',
    rule.removedPosition === undefined
      ? `${rule.addedPosition}`
      : `removed@${rule.removedPosition}`,
  ].join('\t');

const collect = (value: string, previous: string[] = []) => [...previous, value];

export const registerPolicyCommands = (program: Command): void => {
  const retention = program
    .command('retention')
    .description('retention rules (events on the log): which tags the next GC run deletes');

  options(retention.command('add'))
    .description(
      'keep the last N tags (or those pushed within a duration) of matching repositories',
    )
    .requiredOption('--repo <glob>', 'repositories: team/*, team/**, ** (see README)')
    .option('--tag <glob>', 'tags the rule applies to (default: every tag, *)')
    .option('--keep-last <n>', 'keep the N most recently pushed tags (a move counts as a push)')
    .option('--keep-within <duration>', 'keep tags pushed within this long, e.g. 30d, 12h')
    .option('--untagged', 'rank untagged manifests with the tags (kept ones survive GC)')
    .option('--protect <glob>', 'tags never deleted (repeatable)', collect)
    .option('--name <name>', 'a name for the rule')
    .action(
      async (
        o: Options & {
          repo: string;
          tag?: string;
          keepLast?: string;
          keepWithin?: string;
          untagged?: boolean;
          protect?: string[];
          name?: string;
        },
      ) => {
        const result = await withPolicies(o, true, (p) =>
          p.addRule({
            repoPattern: o.repo,
            tagPattern: o.tag ?? '*',
            ...(o.keepLast !== undefined && { keepLast: Number(o.keepLast) }),
            ...(o.keepWithin !== undefined && { keepWithin: o.keepWithin }),
            ...(o.untagged === true && { untagged: true }),
            ...(o.protect !== undefined && { protect: o.protect }),
            ...(o.name !== undefined && { name: o.name }),
          }),
        );
        if (o.json) printJson(result);
        else
          print(
            `rule ${result.rule.id} added at position ${result.position}: ${describeRule(result.rule)}`,
          );
      },
    );

  options(retention.command('ls'))
    .description('list retention rules')
    .option('--all', 'include removed rules')
    .action(async (o: Options & { all?: boolean }) => {
      const rules = await withPolicies(o, false, (p) => p.listRules({ all: o.all === true }));
      if (o.json) {
        printJson({ rules });
        return;
      }
      print(
        ['ID', 'NAME', 'REPOSITORIES', 'TAGS', 'KEEP', 'UNTAGGED', 'PROTECT', 'ADDED'].join('\t'),
      );
      for (const rule of rules) print(describeRule(rule));
    });

  options(retention.command('rm').argument('<id>', 'rule id (or name of an active rule)'))
    .description('remove a retention rule (appends RetentionRuleRemoved)')
    .action(async (id: string, o: Options) => {
      const result = await withPolicies(o, true, (p) => p.removeRule(id));
      if (o.json) printJson(result);
      else print(`rule ${result.id} removed at position ${result.position}`);
    });

  const quota = program
    .command('quota')
    .description('storage quotas per repository namespace (events on the log)');

  options(quota.command('set').argument('<namespace>').argument('<size>', 'e.g. 10GiB, 500MB'))
    .description('set a namespace quota: pushes that would go over it fail with DENIED')
    .action(async (namespace: string, size: string, o: Options) => {
      const bytes = orThrow(parseBytes(size));
      const result = await withPolicies(o, true, (p) => p.setQuota(namespace, bytes));
      if (o.json) printJson(result);
      else
        print(
          `quota of ${result.namespace} set to ${formatBytes(bytes)} at position ${result.position}`,
        );
    });

  options(quota.command('ls'))
    .description('quotas with their usage (distinct blobs linked in the namespace)')
    .action(async (o: Options) => {
      const quotas = await withPolicies(o, false, (p) => p.listQuotas());
      if (o.json) {
        printJson({ quotas });
        return;
      }
      print(['NAMESPACE', 'USED', 'QUOTA', 'USE%', 'BLOBS'].join('\t'));
      for (const q of quotas) {
        const percent = q.bytes === 0 ? '-' : `${Math.round((q.used / q.bytes) * 100)}%`;
        print(
          [q.namespace, formatBytes(q.used), formatBytes(q.bytes), percent, q.blobs].join('\t'),
        );
      }
    });

  options(quota.command('rm').argument('<namespace>'))
    .description('remove a namespace quota (appends QuotaRemoved)')
    .action(async (namespace: string, o: Options) => {
      const result = await withPolicies(o, true, (p) => p.removeQuota(namespace));
      if (o.json) printJson(result);
      else print(`quota of ${result.namespace} removed at position ${result.position}`);
    });
};

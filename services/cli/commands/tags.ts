import type { Command } from 'commander';
import {
  ShoalError,
  isShoalError,
  orThrow,
  parseDigest,
  parseRepoName,
  parseTagReference,
} from '../../../domain';
import { buildIndexProjection, parseAsOf, tagHistoryProjection } from '../../../projections';
import { createBuildIndexClient } from '../../build-index/client/buildIndexClient';
import type { TagApi } from '../../build-index/client/tagApi';
import { createTagService } from '../../build-index/tagService';
import { systemClock } from '../../shared/clock';
import { createProjectionRunner } from '../../shared/projectionRunner';
import { print, printJson, table } from '../output';
import { buildIndexService, callRemote, serviceUrl } from '../remote';
import type { GlobalOptions } from './common';
import { addDataDirOption, defaultLogConfig, withState } from './common';
import type { ClientIdentityOptions } from './clientIdentity';
import { addClientIdentityOptions, clientIdentityOf } from './clientIdentity';

type TagsOptions = GlobalOptions &
  ClientIdentityOptions & { url?: string; json?: boolean; minPosition?: string };

/**
 * Runs `fn` with a TagApi: over HTTP with `--url`, else directly on the data directory
 * (projections are brought up to date with the log first, so reads are current).
 */
const withTags = async <T>(
  options: TagsOptions,
  write: boolean,
  fn: (tags: TagApi) => Promise<T>,
): Promise<T> => {
  if (options.url !== undefined) {
    const url = serviceUrl(options.url, buildIndexService);
    return callRemote(url, buildIndexService, () =>
      fn(createBuildIndexClient(url, { identity: clientIdentityOf(options) })),
    );
  }
  return withState(options, write, async ({ log, store }) => {
    const runner = createProjectionRunner({
      log,
      store,
      projections: [buildIndexProjection, tagHistoryProjection],
    });
    await runner.catchUp();
    return fn(
      createTagService({
        log,
        store,
        writer: { clock: systemClock, cluster: defaultLogConfig.cluster, actor: 'cli' },
        waitFor: async () => {
          await runner.catchUp();
        },
      }),
    );
  });
};

const common = (command: Command) =>
  addClientIdentityOptions(
    addDataDirOption(command)
      .option('--url <url>', 'talk to a running build-index instead of the data directory')
      .option('--json', 'print JSON'),
  );

export const registerTagCommands = (program: Command): void => {
  const tags = program
    .command('tags')
    .description('read and write tags (on the data directory, or a build-index with --url)');

  common(tags.command('put').argument('<repo:tag>').argument('<digest>'))
    .description('point a tag at the digest of a manifest the repository holds (appends TagPushed)')
    .option('--force', 'point the tag even if the repository has no manifest of that digest')
    .action(
      async (refText: string, digestText: string, options: TagsOptions & { force?: boolean }) => {
        const ref = orThrow(parseTagReference(refText));
        const digest = orThrow(parseDigest(digestText));
        const result = await withTags(options, true, (api) =>
          api.put(ref, digest, { requireManifest: options.force !== true }),
        ).catch((error: unknown) => {
          if (!isShoalError(error, 'MANIFEST_UNKNOWN')) throw error;
          // A tag on a digest no manifest has is served to no one and replicated by no rule.
          throw new ShoalError(
            'MANIFEST_UNKNOWN',
            `${error.message} (through the proxy, e.g. skopeo copy … docker://<proxy>/${ref.repo}:…), ` +
              'or pass --force to point the tag anyway',
            { detail: { repo: ref.repo, digest } },
          );
        });
        if (options.json) printJson({ ...ref, digest, ...result });
        else
          print(
            `${refText} -> ${digest} at position ${result.position}${result.changed ? '' : ' (unchanged)'}`,
          );
      },
    );

  common(tags.command('get').argument('<repo:tag>'))
    .description('print the digest a tag points to, now or at a past time or position')
    .option(
      '--at <when>',
      'a log position (42), a time back from now (5m, 2h ago, 3 days ago) or an ISO 8601 ' +
        'time (2026-11-28T14:02:00Z)',
    )
    .option('--min-position <n>', 'wait until the build-index has applied this position')
    .action(async (refText: string, options: TagsOptions & { at?: string }) => {
      const ref = orThrow(parseTagReference(refText));
      const at =
        options.at === undefined ? undefined : orThrow(parseAsOf(options.at, systemClock.now()));
      const minPosition =
        options.minPosition === undefined ? undefined : Number(options.minPosition);
      const view = await withTags(options, false, (api) =>
        api.get(ref, { ...(at && { at }), ...(minPosition !== undefined && { minPosition }) }),
      );
      if (options.json) printJson(view);
      else print(view.digest);
    });

  common(tags.command('delete').argument('<repo:tag>'))
    .description('delete a tag (appends TagDeleted)')
    .action(async (refText: string, options: TagsOptions) => {
      const ref = orThrow(parseTagReference(refText));
      const result = await withTags(options, true, (api) => api.delete(ref));
      if (options.json) printJson({ ...ref, ...result });
      else print(`${refText} deleted at position ${result.position}`);
    });

  common(tags.command('history').argument('<repo:tag>'))
    .description('every change of a tag: position, time, actor, client address, digest')
    .action(async (refText: string, options: TagsOptions) => {
      const ref = orThrow(parseTagReference(refText));
      const history = await withTags(options, false, (api) => api.history(ref));
      if (options.json) {
        printJson({ ...ref, history });
        return;
      }
      print(
        table(
          ['POSITION', 'TIME', 'ACTOR', 'CLIENT', 'CHANGE'],
          history.map((change) => [
            change.position,
            change.at,
            change.actor,
            change.client ?? '-',
            change.kind === 'pushed' ? change.digest : `deleted (was ${change.previous})`,
          ]),
        ),
      );
    });

  common(tags.command('ls').argument('<repo>'))
    .description("list a repository's tags")
    .action(async (repoText: string, options: TagsOptions) => {
      const repo = orThrow(parseRepoName(repoText));
      const { tags: list } = await withTags(options, false, (api) => api.list(repo));
      if (options.json) printJson({ name: repo, tags: list });
      else for (const tag of list) print(tag);
    });
};

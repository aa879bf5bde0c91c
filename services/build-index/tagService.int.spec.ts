import { createMemoryEventLog } from '../../adapters/eventlog';
import { createMemoryProjectionStore } from '../../adapters/projection-store/memory/memoryProjectionStore';
import type { RepoName, Tag } from '../../domain';
import { parseDigest, orThrow } from '../../domain';
import { buildIndexProjection, tagHistoryProjection } from '../../projections';
import { createProjectionRunner } from '../shared/projectionRunner';
import { createTagService } from './tagService';
import { manifestPushed, randomDigest, randomRepo } from '../../test/fixtures/events';

// `requireManifest`: the check `shoal tags put` asks for, so a tag never points at a digest
// no manifest of the repository has (a replication rule would retry it for ever).

const setup = () => {
  const log = createMemoryEventLog();
  const store = createMemoryProjectionStore();
  const runner = createProjectionRunner({
    log,
    store,
    projections: [buildIndexProjection, tagHistoryProjection],
  });
  runner.start();
  const writer = { clock: { now: () => Date.now() }, cluster: 'test', actor: 'cli' };
  const tags = createTagService({
    log,
    store,
    writer,
    waitFor: (position: number) => runner.waitFor(position, 2000),
  });
  return { log, tags, stop: () => runner.stop() };
};

describe('tag service: tags put on a digest that must name a manifest', () => {
  it('refuses a digest the repository has no manifest of, and accepts one it has', async () => {
    const { log, tags, stop } = setup();
    try {
      const repo = randomRepo('int/app') as RepoName;
      const ref = { repo, tag: 'v1' as Tag };
      const missing = orThrow(parseDigest(randomDigest()));
      await expect(tags.put(ref, missing, { requireManifest: true })).rejects.toMatchObject({
        code: 'MANIFEST_UNKNOWN',
        message: `repository ${repo} has no manifest ${missing}: push the image first`,
      });
      expect(await log.head()).toBe(0);

      const pushed = orThrow(parseDigest(randomDigest()));
      await log.append([manifestPushed({ repo, digest: pushed })]);
      const { changed } = await tags.put(ref, pushed, { requireManifest: true });
      expect(changed).toBe(true);
      // A manifest of another repository does not count.
      const other = { repo: randomRepo('int/other') as RepoName, tag: 'v1' as Tag };
      await expect(tags.put(other, pushed, { requireManifest: true })).rejects.toMatchObject({
        code: 'MANIFEST_UNKNOWN',
      });
      // The check is the default; without it (`tags put --force`) any digest.
      await expect(tags.put(other, missing)).rejects.toMatchObject({ code: 'MANIFEST_UNKNOWN' });
      expect((await tags.put(other, missing, { requireManifest: false })).changed).toBe(true);
    } finally {
      await stop();
    }
  });
});

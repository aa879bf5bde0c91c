import { createMemoryEventLog } from '../../../adapters/eventlog';
import { createMemoryProjectionStore } from '../../../adapters/projection-store/memory/memoryProjectionStore';
import { isShoalError } from '../../../domain';
import type { Digest, EventLog, RepoName, Tag } from '../../../domain';
import { tempDir } from '../../../test/fixtures/cli';
import { freePort } from '../../../test/fixtures/ports';
import { systemClock } from '../../shared/clock';
import { validateConfig } from '../../shared/config';
import { silentLogger } from '../../shared/logger';
import { BuildIndexConfigSchema } from '../config';
import type { RunningService } from '../main';
import { startBuildIndex } from '../main';
import { buildIndexUrls, createBuildIndexTags } from './failoverTagApi';

// Two build-index instances over one log, as a cluster runs them: a client given both goes on
// when the one it was using stops (a refused connection costs a retry on the other), and
// passes on what a build-index answers (an unknown tag is not a reason to ask another).

const digest = (n: number) => `sha256:${n.toString(16).padStart(64, '0')}` as Digest;
const repo = 'team/app' as RepoName;

describe('build-index failover', () => {
  let dir: ReturnType<typeof tempDir>;
  let log: EventLog;
  const started: RunningService[] = [];

  const start = async (name: string) => {
    const service = await startBuildIndex({
      config: validateConfig(BuildIndexConfigSchema, {
        dataDir: `${dir.path}/${name}`,
        listen: { host: '127.0.0.1', port: 0 },
      }),
      logger: silentLogger(),
      clock: systemClock,
      log,
      store: createMemoryProjectionStore(),
    });
    started.push(service);
    return service;
  };

  beforeAll(() => {
    dir = tempDir('shoal-bi-failover-');
    log = createMemoryEventLog();
  });
  afterAll(async () => {
    for (const service of started) await service.close().catch(() => undefined);
    dir.cleanup();
  });

  it('reads the urls of a buildIndex block once each, url first', () => {
    expect(buildIndexUrls({ url: 'http://a', urls: ['http://b', 'http://a'] })).toEqual([
      'http://a',
      'http://b',
    ]);
    expect(buildIndexUrls({ url: '', urls: [] })).toEqual([]);
  });

  it('goes on with the second instance when the first stops', async () => {
    const first = await start('one');
    const second = await start('two');
    const tags = createBuildIndexTags([first.url, second.url]);
    const ref = { repo, tag: 'v1' as Tag };
    const put1 = await tags.put(ref, digest(1), { requireManifest: false });
    expect((await tags.get(ref, { minPosition: put1.position })).digest).toBe(digest(1));

    await first.close();
    // The write goes to the second; the read after it sees it (same log, read-your-writes).
    const put2 = await tags.put(ref, digest(2), { requireManifest: false });
    expect(put2.changed).toBe(true);
    expect((await tags.get(ref, { minPosition: put2.position })).digest).toBe(digest(2));
    // An answer is passed on, not retried elsewhere.
    const unknown = await tags
      .get({ repo, tag: 'missing' as Tag })
      .catch((error: unknown) => error);
    expect(isShoalError(unknown, 'TAG_UNKNOWN')).toBe(true);
  });

  it('fails with SERVICE_UNAVAILABLE naming the last one when none can be reached', async () => {
    const dead = [`http://127.0.0.1:${await freePort()}`, `http://127.0.0.1:${await freePort()}`];
    const tags = createBuildIndexTags(dead, { timeoutMs: 2000 });
    const error = await tags.get({ repo, tag: 'v1' as Tag }).catch((e: unknown) => e);
    expect(isShoalError(error, 'SERVICE_UNAVAILABLE')).toBe(true);
    expect((error as Error).message).toContain(dead[1]?.replace('http://', '') as string);
  });
});

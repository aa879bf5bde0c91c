import { randomBytes } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { Agent, fetch } from 'undici';
import { createMemoryEventLog } from '../../adapters/eventlog';
import { createMemoryProjectionStore } from '../../adapters/projection-store/memory/memoryProjectionStore';
import type { EventLog, RecordedEvent } from '../../domain';
import { BuildIndexConfigSchema } from '../../services/build-index/config';
import type { RunningService } from '../../services/build-index/main';
import { startBuildIndex } from '../../services/build-index/main';
import type { DevSecurity } from '../../services/cli/commands/devSecurity';
import { createDevSecurity } from '../../services/cli/commands/devSecurity';
import type { RunningProxy } from '../../services/proxy/main';
import { systemClock } from '../../services/shared/clock';
import { validateConfig } from '../../services/shared/config';
import { silentLogger } from '../../services/shared/logger';
import { startAuthProxy, writeHtpasswd } from '../fixtures/authProxy';
import { tempDir } from '../fixtures/cli';
import type { GeneratedImage } from '../fixtures/images';
import { generateImage } from '../fixtures/images';
import type { ToolResult } from '../fixtures/processes';
import { runToolAsync } from '../fixtures/processes';

// The proxy writes tags at a build-index of its own, both with TLS and access required: the
// proxy proves itself with its cluster identity and names the user it checked
// (Shoal-On-Behalf-Of), so build-index's TagPushed says `user:alice`, not the proxy. A user
// who sends the same header straight to build-index is recorded as themself.

const skopeoPath = '/usr/bin/skopeo';
const users = { alice: 'alice-secret', bob: 'bob-secret' };
type User = keyof typeof users;

describe('a proxy writing tags at build-index for its users (TLS, identities)', () => {
  let dir: ReturnType<typeof tempDir>;
  let dev: DevSecurity;
  let log: EventLog;
  let buildIndex: RunningService;
  let proxy: RunningProxy;
  let dispatcher: Agent;
  let host: string;
  let images: GeneratedImage[];
  const team = `team-${randomBytes(3).toString('hex')}`;
  const auth = {
    groups: { dev: ['alice', 'bob'] },
    policies: [
      { repositories: [`${team}/**`], groups: ['dev'], actions: ['pull', 'push'] },
      { repositories: [`${team}/**`], users: ['alice'], actions: ['overwrite'] },
    ],
    failedLogins: { delayMs: 0 },
  };

  beforeAll(async () => {
    if (!existsSync(skopeoPath)) throw new Error('missing skopeo: test/services/tools.sh install');
    dir = tempDir('shoal-on-behalf-');
    dev = createDevSecurity(join(dir.path, 'cluster'), '127.0.0.1', silentLogger());
    dispatcher = new Agent({ connect: { ca: readFileSync(dev.certs.caFile) } });
    log = createMemoryEventLog();
    buildIndex = await startBuildIndex({
      config: validateConfig(BuildIndexConfigSchema, {
        dataDir: join(dir.path, 'build-index'),
        listen: { host: '127.0.0.1', port: 0 },
        auth: {
          ...auth,
          htpasswd: { file: writeHtpasswd(join(dir.path, 'bi-htpasswd'), users) },
        },
      }),
      logger: silentLogger(),
      clock: systemClock,
      log,
      store: createMemoryProjectionStore(),
      security: dev.of('build-index'),
    });
    ({ proxy } = await startAuthProxy({
      dir: dir.path,
      users,
      log,
      auth,
      security: dev.of('proxy'),
      config: { buildIndex: { url: buildIndex.url } },
    }));
    host = proxy.url.replace(/^https:\/\//, '');
    images = await Promise.all(
      [1, 2].map((n) =>
        generateImage({ dir: join(dir.path, `image-${n}`), layers: 1, layerSize: 64 * 1024 }),
      ),
    );
  });

  afterAll(async () => {
    await proxy?.close();
    await buildIndex?.close();
    dev?.close();
    await dispatcher?.close();
    dir?.cleanup();
  });

  const push = async (user: User, image: GeneratedImage, ref: string): Promise<ToolResult> =>
    runToolAsync(skopeoPath, [
      '--insecure-policy',
      'copy',
      '--dest-cert-dir',
      dev.clientCertDir,
      '--dest-creds',
      `${user}:${users[user]}`,
      image.layoutRef,
      `docker://${host}/${ref}`,
    ]);
  const tagEvents = async (repo: string) => {
    const events: RecordedEvent[] = [];
    for await (const event of log.read(1)) {
      if (event.type === 'TagPushed' && 'repo' in event.data && event.data.repo === repo) {
        events.push(event);
      }
    }
    return events.map((e) => [
      e.metadata.actor,
      e.metadata.client,
      (e.data as { digest: string }).digest,
    ]);
  };

  it('records the user the proxy acts for, and keeps tags immutable for those without overwrite', async () => {
    const [first, second] = images as [GeneratedImage, GeneratedImage];
    const repo = `${team}/app`;
    const pushed = await push('bob', first, `${repo}:v1`);
    expect(pushed.stderr).not.toMatch(/error|fatal/i);
    expect(pushed.status).toBe(0);
    const moved = await push('bob', second, `${repo}:v1`);
    expect(moved.status).not.toBe(0);
    expect(moved.stderr).toMatch(/denied/i);
    expect((await push('alice', second, `${repo}:v1`)).status).toBe(0);
    expect(await tagEvents(repo)).toEqual([
      ['user:bob', '127.0.0.1', first.top.digest],
      ['user:alice', '127.0.0.1', second.top.digest],
    ]);
  });

  it('ignores on-behalf-of headers from a user: they are recorded as themself', async () => {
    const [first] = images as [GeneratedImage];
    const repo = `${team}/spoofed`;
    expect((await push('alice', first, `${repo}:v1`)).status).toBe(0);
    const response = await fetch(`${buildIndex.url}/v1/repositories/${repo}/tags/v2`, {
      method: 'PUT',
      dispatcher,
      headers: {
        'content-type': 'application/json',
        authorization: `Basic ${Buffer.from(`bob:${users.bob}`).toString('base64')}`,
        'shoal-on-behalf-of': 'user:alice',
        'shoal-client-address': '10.9.9.9',
      },
      body: JSON.stringify({ digest: first.top.digest }),
    });
    expect(response.status).toBe(201);
    expect(await tagEvents(repo)).toEqual([
      ['user:alice', '127.0.0.1', first.top.digest],
      ['user:bob', '127.0.0.1', first.top.digest],
    ]);
  });
});

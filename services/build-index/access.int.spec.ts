import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { createMemoryEventLog } from '../../adapters/eventlog';
import { createMemoryProjectionStore } from '../../adapters/projection-store/memory/memoryProjectionStore';
import type { EventLog } from '../../domain';
import { writeHtpasswd } from '../../test/fixtures/authProxy';
import { tempDir } from '../../test/fixtures/cli';
import { manifestPushed } from '../../test/fixtures/events';
import { ReplicationConfigSchema } from '../replicator/config';
import { createReplicatorComponent } from '../replicator/main';
import { systemClock } from '../shared/clock';
import { validateConfig } from '../shared/config';
import { silentLogger } from '../shared/logger';
import { BuildIndexConfigSchema } from './config';
import type { RunningService } from './main';
import { startBuildIndex } from './main';
import { openSecurity } from '../shared/security/roleSecurity';

// build-index with access required: users call its API with their passwords (or Shoal's
// tokens), and the policies the proxy applies decide here too; replication rules (mounted
// in the same app) are for admins only.

const users = { alice: 'alice-pw', bob: 'bob-pw', reader: 'reader-pw', root: 'root-pw' };
type User = keyof typeof users;
const basic = (user: User) => ({
  authorization: `Basic ${Buffer.from(`${user}:${users[user]}`).toString('base64')}`,
});

describe('build-index access: users and policies', () => {
  let dir: ReturnType<typeof tempDir>;
  let log: EventLog;
  let service: RunningService;
  const team = `team-${randomBytes(3).toString('hex')}`;

  beforeAll(async () => {
    dir = tempDir('shoal-build-index-auth-');
    log = createMemoryEventLog();
    const store = createMemoryProjectionStore();
    const replicator = createReplicatorComponent({
      config: validateConfig(ReplicationConfigSchema, {
        lock: { enabled: false },
        allowedDestinations: ['https://mirror.example.com'],
      }),
      cluster: 'test',
      dataDir: dir.path,
      readYourWritesTimeoutMs: 5000,
      logger: silentLogger(),
      clock: systemClock,
      log,
      store,
      actor: 'build-index',
    });
    service = await startBuildIndex({
      config: validateConfig(BuildIndexConfigSchema, {
        dataDir: dir.path,
        listen: { host: '127.0.0.1', port: 0 },
        auth: {
          htpasswd: { file: writeHtpasswd(join(dir.path, 'htpasswd'), users) },
          groups: { dev: ['alice', 'bob'] },
          policies: [
            { repositories: [`${team}/**`], groups: ['dev'], actions: ['pull', 'push'] },
            { repositories: [`${team}/**`], users: ['alice'], actions: ['overwrite', 'delete'] },
            { repositories: [`${team}/**`], users: ['reader'], actions: ['pull'] },
          ],
          admins: ['root'],
          failedLogins: { delayMs: 0 },
        },
      }),
      logger: silentLogger(),
      clock: systemClock,
      log,
      store,
      components: [replicator],
      security: { ...openSecurity, mode: 'required' },
    });
  });

  afterAll(async () => {
    await service?.close();
    dir?.cleanup();
  });

  const call = (path: string, init: RequestInit = {}) => fetch(`${service.url}${path}`, init);
  const manifests = async (repo: string, count: number) => {
    const events = Array.from({ length: count }, () => manifestPushed({ repo }));
    await log.append(events);
    return events.map((event) => event.data.digest);
  };
  const putTag = (user: User | undefined, repo: string, tag: string, digest: string) =>
    call(`/v1/repositories/${repo}/tags/${tag}`, {
      method: 'PUT',
      headers: { 'content-type': 'application/json', ...(user && basic(user)) },
      body: JSON.stringify({ digest }),
    });

  it('refuses a tag on a manifest the repository lacks: MANIFEST_UNKNOWN', async () => {
    const repo = `${team}/app`;
    const [elsewhere] = (await manifests(`${team}/other`, 1)) as [string];
    const response = await putTag('alice', repo, 'v1', elsewhere);
    expect(response.status).toBe(404);
    expect(((await response.json()) as { code: string }).code).toBe('MANIFEST_UNKNOWN');
    const [own] = (await manifests(repo, 1)) as [string];
    expect((await putTag('alice', repo, 'v1', own)).status).toBe(201);
  });

  it('asks an anonymous caller to log in, and applies the policies to users', async () => {
    const repo = `${team}/policed`;
    const [first, second] = (await manifests(repo, 2)) as [string, string];
    const anonymous = await putTag(undefined, repo, 'v1', first);
    expect(anonymous.status).toBe(401);
    expect(anonymous.headers.get('www-authenticate')).toBe('Basic realm="shoal build-index"');
    expect((await call(`/v1/repositories/${repo}/tags/v1`)).status).toBe(401);

    const denied = await putTag('reader', repo, 'v1', first);
    expect(denied.status).toBe(403);
    expect(((await denied.json()) as { code: string }).code).toBe('DENIED');
    expect((await putTag('bob', repo, 'v1', first)).status).toBe(201);
    const read = await call(`/v1/repositories/${repo}/tags/v1`, { headers: basic('reader') });
    expect(((await read.json()) as { digest: string }).digest).toBe(first);
    // Bob may push but not move a tag; alice may.
    expect((await putTag('bob', repo, 'v1', second)).status).toBe(403);
    expect((await putTag('alice', repo, 'v1', second)).status).toBe(201);
    const remove = (user: User) =>
      call(`/v1/repositories/${repo}/tags/v1`, { method: 'DELETE', headers: basic(user) });
    expect((await remove('bob')).status).toBe(403);
    expect((await remove('alice')).status).toBe(200);

    const history = (await (
      await call(`/v1/repositories/${repo}/tags/v1/history`, { headers: basic('reader') })
    ).json()) as { history: Array<{ kind: string; actor: string }> };
    expect(history.history.map((h) => [h.kind, h.actor])).toEqual([
      ['pushed', 'user:bob'],
      ['pushed', 'user:alice'],
      ['deleted', 'user:alice'],
    ]);
  });

  it('lists in the catalog only what the caller may pull', async () => {
    const repo = `${team}/listed`;
    const hidden = `hidden-${randomBytes(3).toString('hex')}/x`;
    const [own] = (await manifests(repo, 1)) as [string];
    const [secret] = (await manifests(hidden, 1)) as [string];
    expect((await putTag('alice', repo, 'v1', own)).status).toBe(201);
    expect((await putTag('root', hidden, 'v1', secret)).status).toBe(201);
    const catalogOf = async (user: User) =>
      (
        (await (await call('/v1/catalog', { headers: basic(user) })).json()) as {
          repositories: string[];
        }
      ).repositories;
    expect(await catalogOf('reader')).toContain(repo);
    expect(await catalogOf('reader')).not.toContain(hidden);
    expect(await catalogOf('root')).toEqual(expect.arrayContaining([repo, hidden]));
    expect((await call('/v1/catalog')).status).toBe(401);
  });

  it('lets only admins see, add and remove replication rules, naming them', async () => {
    const rule = { repo: `${team}/**`, to: 'https://mirror.example.com' };
    const add = (user: User) =>
      call('/v1/replication/rules', {
        method: 'POST',
        headers: { 'content-type': 'application/json', ...basic(user) },
        body: JSON.stringify(rule),
      });
    const refused = await add('alice');
    expect(refused.status).toBe(403);
    expect(((await refused.json()) as { code: string }).code).toBe('DENIED');
    expect((await call('/v1/replication/rules', { headers: basic('alice') })).status).toBe(403);
    const added = await add('root');
    expect(added.status).toBe(201);
    const { rule: created } = (await added.json()) as { rule: { id: string } };
    const elsewhere = await call('/v1/replication/rules', {
      method: 'POST',
      headers: { 'content-type': 'application/json', ...basic('root') },
      body: JSON.stringify({ ...rule, to: 'https://attacker.example.net' }),
    });
    expect(elsewhere.status).toBe(403);
    const removed = await call(`/v1/replication/rules/${created.id}`, {
      method: 'DELETE',
      headers: basic('root'),
    });
    expect(removed.status).toBe(200);
    const actors: string[] = [];
    for await (const event of log.read(1)) {
      if (event.type.startsWith('ReplicationRule')) actors.push(event.metadata.actor);
    }
    expect(actors).toEqual(['user:root', 'user:root']);
  });
});

import { join } from 'node:path';
import type { EventLog, ProjectionStore } from '../../domain';
import { openSqliteEventLog } from '../../adapters/eventlog';
import { openSqliteProjectionStore } from '../../adapters/projection-store/sqlite/sqliteProjectionStore';
import { tempDir } from '../../test/fixtures/cli';
import {
  manifestPushed,
  originJoined,
  randomDigest,
  tagPushed,
  testMetadata,
} from '../../test/fixtures/events';
import { writeHtpasswd } from '../../test/fixtures/authProxy';
import { systemClock } from '../shared/clock';
import { validateConfig } from '../shared/config';
import { silentLogger } from '../shared/logger';
import { openSecurity } from '../shared/security/roleSecurity';
import { ConsoleConfigSchema } from './config';
import type { RunningConsole } from './main';
import { startConsole } from './main';

// The console's API and live feed over a real SQLite log and store, behind the registry's
// logins and policies (access required): root is an admin and sees everything; alice may
// pull only team-a/**, and nothing of team-b reaches her, neither in reads nor on the live
// feed; a caller without credentials is asked for them.
const users = { root: 'root-pw', alice: 'alice-pw' };
type User = keyof typeof users;
const basic = (user: User) => ({
  authorization: `Basic ${Buffer.from(`${user}:${users[user]}`).toString('base64')}`,
});

type Problem = { status: number; code: string };

describe('console API', () => {
  let dir: ReturnType<typeof tempDir>;
  let log: EventLog;
  let store: ProjectionStore;
  let console_: RunningConsole;
  const first = randomDigest();
  const second = randomDigest();
  const secret = randomDigest();
  let firstPosition = 0;

  const get = async <T>(path: string, viewer: User = 'root'): Promise<T> => {
    const response = await fetch(`${console_.url}${path}`, { headers: basic(viewer) });
    const body = (await response.json()) as T;
    if (!response.ok) throw Object.assign(new Error(JSON.stringify(body)), body as object);
    return body;
  };

  beforeAll(async () => {
    dir = tempDir('shoal-console-int-');
    log = openSqliteEventLog(join(dir.path, 'log.db'));
    store = openSqliteProjectionStore(join(dir.path, 'projections.db'));
    await log.append([originJoined({ originId: 'o1' })]);
    await log.append([manifestPushed({ repo: 'team-a/app', digest: first, references: [] })]);
    firstPosition = await log.append([tagPushed({ repo: 'team-a/app', tag: 'v1', digest: first })]);
    await log.append([manifestPushed({ repo: 'team-b/secret', digest: secret, references: [] })]);
    await log.append([tagPushed({ repo: 'team-b/secret', tag: 'v1', digest: secret })]);
    await log.append([manifestPushed({ repo: 'team-a/app', digest: second, references: [] })]);
    const head = await log.append([
      tagPushed({
        repo: 'team-a/app',
        tag: 'v1',
        digest: second,
        previous: first,
        metadata: testMetadata({ actor: 'user:bob' }),
      }),
    ]);
    const config = validateConfig(ConsoleConfigSchema, {
      dataDir: dir.path,
      listen: { port: 0 },
      auth: {
        htpasswd: { file: writeHtpasswd(join(dir.path, 'htpasswd'), users) },
        policies: [{ repositories: ['team-a/**'], users: ['alice'], actions: ['pull'] }],
        admins: ['root'],
        failedLogins: { delayMs: 0 },
      },
    });
    console_ = await startConsole({
      config,
      logger: silentLogger(),
      clock: systemClock,
      log,
      store,
      security: { ...openSecurity, mode: 'required' },
    });
    // Reads with `min` wait for the console's projections to reach the position.
    await get(`/api/overview?min=${head}`);
  });

  afterAll(async () => {
    await console_?.close();
    await store?.close();
    await log?.close();
    dir?.cleanup();
  });

  it('lists repositories, filtered by what the viewer may pull', async () => {
    type List = { repositories: Array<{ name: string; tags: number; manifests: number }> };
    const all = await get<List>('/api/repositories?min=7');
    expect(all.repositories.map((r) => r.name)).toEqual(['team-a/app', 'team-b/secret']);
    expect(all.repositories[0]).toMatchObject({ tags: 1, manifests: 2 });
    const alice = await get<List>('/api/repositories', 'alice');
    expect(alice.repositories.map((r) => r.name)).toEqual(['team-a/app']);
    const searched = await get<List>('/api/repositories?q=SECRET');
    expect(searched.repositories.map((r) => r.name)).toEqual(['team-b/secret']);
  });

  it('hides a repository the viewer may not pull as unknown', async () => {
    await expect(get('/api/tags?repo=team-b/secret', 'alice')).rejects.toMatchObject({
      status: 404,
      code: 'NAME_UNKNOWN',
    } satisfies Partial<Problem>);
    await expect(get('/api/history?repo=team-b/secret&tag=v1', 'alice')).rejects.toMatchObject({
      status: 404,
    });
  });

  it('gives a tag history newest first, and the repository as of a position', async () => {
    type History = { changes: Array<{ digest: string; actor: string; position: number }> };
    const history = await get<History>('/api/history?repo=team-a/app&tag=v1', 'alice');
    expect(history.changes.map((c) => [c.digest, c.actor])).toEqual([
      [second, 'user:bob'],
      [first, 'test'],
    ]);
    type AsOf = { tags: Array<{ tag: string; digest: string; current: string }> };
    const then = await get<AsOf>(`/api/as-of?repo=team-a/app&at=${firstPosition}`, 'alice');
    expect(then.tags).toEqual([
      expect.objectContaining({ tag: 'v1', digest: first, current: second }),
    ]);
    await expect(get('/api/as-of?repo=team-a/app&at=yesterday')).rejects.toMatchObject({
      status: 400,
    });
  });

  it('shows the ring and other events only to viewers of the cluster', async () => {
    type Ring = { members: Array<{ id: string }> };
    expect((await get<Ring>('/api/ring')).members.map((m) => m.id)).toEqual(['o1']);
    expect((await get<Ring>('/api/ring', 'alice')).members).toEqual([]);
    type Events = { events: Array<{ type: string; data: { repo?: string } }> };
    const events = await get<Events>('/api/events', 'alice');
    expect(events.events.length).toBeGreaterThan(0);
    expect(events.events.every((e) => e.data.repo?.startsWith('team-a/'))).toBe(true);
    const tags = await get<Events>('/api/events?type=TagPushed&stream=tag/team-a');
    expect(tags.events.map((e) => e.type)).toEqual(['TagPushed', 'TagPushed']);
  });

  it('streams new events live, once applied, only those the viewer may see', async () => {
    const controller = new AbortController();
    const response = await fetch(`${console_.url}/api/live`, {
      headers: basic('alice'),
      signal: controller.signal,
    });
    expect(response.headers.get('content-type')).toMatch(/^text\/event-stream/);
    const reader = (response.body as ReadableStream<Uint8Array>).getReader();
    const decoder = new TextDecoder();
    let buffer = '';
    /** The next `log` message of the stream. */
    const nextLog = async (): Promise<{ position: number; data: { repo: string } }> => {
      for (;;) {
        const end = buffer.indexOf('\n\n');
        if (end >= 0) {
          const message = buffer.slice(0, end);
          buffer = buffer.slice(end + 2);
          if (/^event: log$/m.test(message)) {
            return JSON.parse(/^data: (.*)$/m.exec(message)?.[1] as string) as never;
          }
          continue;
        }
        const { value, done } = await reader.read();
        if (done) throw new Error('the live stream ended');
        buffer += decoder.decode(value, { stream: true });
      }
    };
    try {
      // Wait for the stream to be open (its first `position` message) before appending.
      while (!buffer.includes('event: position')) {
        const { value } = await reader.read();
        buffer += decoder.decode(value, { stream: true });
      }
      await log.append([tagPushed({ repo: 'team-b/secret', tag: 'v2', digest: secret })]);
      const visible = await log.append([
        tagPushed({ repo: 'team-a/app', tag: 'v2', digest: first }),
      ]);
      const event = await nextLog();
      expect(event).toMatchObject({ position: visible, data: { repo: 'team-a/app' } });
      // Sent once applied: a read right after it sees the change.
      type Tags = { tags: Array<{ tag: string }> };
      const tags = await get<Tags>('/api/tags?repo=team-a/app', 'alice');
      expect(tags.tags.map((t) => t.tag)).toEqual(['v1', 'v2']);
    } finally {
      controller.abort();
      await reader.cancel().catch(() => undefined);
    }
  });

  it('sends a reconnecting view what it missed after its Last-Event-ID, in order', async () => {
    /** The positions of the first `count` log messages of a view opened after `lastId`. */
    const replayed = async (lastId: number, count: number, viewer: User = 'root') => {
      const controller = new AbortController();
      const response = await fetch(`${console_.url}/api/live?type=TagPushed`, {
        headers: {
          'last-event-id': String(lastId),
          ...basic(viewer),
        },
        signal: controller.signal,
      });
      const reader = (response.body as ReadableStream<Uint8Array>).getReader();
      const decoder = new TextDecoder();
      let text = '';
      const ids: number[] = [];
      try {
        while (ids.length < count) {
          const { value, done } = await reader.read();
          if (done) break;
          text += decoder.decode(value, { stream: true });
          const messages = text.split('\n\n');
          text = messages.pop() as string;
          for (const message of messages) {
            const id = /^id: (\d+)$/m.exec(message);
            if (/^event: log$/m.test(message) && id !== null) ids.push(Number(id[1]));
          }
        }
      } finally {
        controller.abort();
        await reader.cancel().catch(() => undefined);
      }
      return ids;
    };
    const pushes = (await log.readBatch(firstPosition + 1))
      .filter((e) => e.type === 'TagPushed')
      .map((e) => ({ position: e.position, repo: (e.data as { repo: string }).repo }));
    expect(pushes.length).toBeGreaterThanOrEqual(3);
    expect(await replayed(firstPosition, pushes.length)).toEqual(pushes.map((p) => p.position));
    const alices = pushes.filter((p) => p.repo.startsWith('team-a/')).map((p) => p.position);
    expect(await replayed(firstPosition, alices.length, 'alice')).toEqual(alices);
  });

  it('asks a caller without credentials to log in, and refuses a wrong password', async () => {
    for (const path of ['/', '/assets/app.js', '/api/overview', '/api/repositories']) {
      const response = await fetch(`${console_.url}${path}`);
      expect([path, response.status]).toEqual([path, 401]);
      expect(response.headers.get('www-authenticate')).toBe('Basic realm="shoal console"');
    }
    const wrong = await fetch(`${console_.url}/api/overview`, {
      headers: { authorization: `Basic ${Buffer.from('alice:nope').toString('base64')}` },
    });
    expect(wrong.status).toBe(401);
    // Probes and Prometheus need no login.
    expect((await fetch(`${console_.url}/health`)).status).toBe(200);
    type Overview = { viewer: { actor: string; seesCluster: boolean } };
    expect((await get<Overview>('/api/overview', 'alice')).viewer).toEqual({
      actor: 'user:alice',
      seesCluster: false,
    });
    expect((await get<Overview>('/api/overview')).viewer).toEqual({
      actor: 'user:root',
      seesCluster: true,
    });
  });

  it('serves the page and its libraries from the installed packages', async () => {
    const page = await fetch(`${console_.url}/`, { headers: basic('alice') });
    expect(await page.text()).toContain('/assets/app.js');
    for (const path of ['/assets/app.js', '/vendor/preact.mjs', '/vendor/htm-preact.mjs']) {
      const response = await fetch(`${console_.url}${path}`, { headers: basic('alice') });
      expect([path, response.status]).toEqual([path, 200]);
      expect(response.headers.get('content-type')).toMatch(/^text\/javascript/);
    }
    const outside = await fetch(`${console_.url}/assets/../package.json`, {
      headers: basic('alice'),
    });
    expect(outside.status).toBe(404);
  });
});

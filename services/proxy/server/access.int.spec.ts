import { randomBytes } from 'node:crypto';
import type { EventLog, RecordedEvent } from '../../../domain';
import { startAuthProxy } from '../../../test/fixtures/authProxy';
import { sha256 } from '../../../test/fixtures/blobs';
import { tempDir } from '../../../test/fixtures/cli';
import type { RunningProxy } from '../main';

// The proxy with access required: users from an htpasswd file written by `htpasswd -B`, the
// token endpoint, per-repository policies, and what the audit trail then records. Clients
// here speak HTTP with fetch, step by step, as registry clients do; the e2e suite runs the
// real clients.

const oci = {
  manifest: 'application/vnd.oci.image.manifest.v1+json',
  config: 'application/vnd.oci.image.config.v1+json',
  layer: 'application/vnd.oci.image.layer.v1.tar+gzip',
};

const users = { alice: 'alice-pw', bob: 'bob-pw', reader: 'reader-pw', admin: 'admin-pw' };
const basic = (user: keyof typeof users) =>
  `Basic ${Buffer.from(`${user}:${users[user]}`).toString('base64')}`;

describe('proxy access: users, tokens and policies', () => {
  let dir: ReturnType<typeof tempDir>;
  let proxy: RunningProxy;
  let log: EventLog;
  const team = `team-${randomBytes(3).toString('hex')}`;

  beforeAll(async () => {
    dir = tempDir('shoal-proxy-auth-');
    ({ proxy, log } = await startAuthProxy({
      dir: dir.path,
      users,
      auth: {
        groups: { dev: ['alice', 'bob'] },
        policies: [
          { repositories: [`${team}/**`], groups: ['dev'], actions: ['pull', 'push'] },
          { repositories: [`${team}/**`], users: ['alice'], actions: ['overwrite', 'delete'] },
          { repositories: [`${team}/**`], users: ['reader'], actions: ['pull'] },
        ],
        anonymous: { repositories: ['public/**'], actions: ['pull'] },
        admins: ['admin'],
        failedLogins: { delayMs: 200 },
      },
    }));
  });

  afterAll(async () => {
    await proxy?.close();
    dir?.cleanup();
  });

  const call = (path: string, init: RequestInit = {}) => fetch(`${proxy.url}${path}`, init);
  const codeOf = async (response: Response) =>
    ((await response.json()) as { errors: Array<{ code: string }> }).errors[0]?.code;

  /** A token for scopes, as docker asks for one: GET with Basic credentials (or none). */
  const token = async (user: keyof typeof users | undefined, ...scopes: string[]) => {
    const query = new URLSearchParams({ service: 'shoal' });
    for (const scope of scopes) query.append('scope', scope);
    const response = await call(`/auth/token?${query}`, {
      headers: user === undefined ? {} : { authorization: basic(user) },
    });
    expect(response.status).toBe(200);
    const body = (await response.json()) as { token: string; access_token: string };
    expect(body.access_token).toBe(body.token);
    return { authorization: `Bearer ${body.token}` };
  };
  const pushScope = (repo: string) => `repository:${repo}:pull,push`;

  const pushBlob = async (repo: string, content: Buffer, auth: Record<string, string>) => {
    const digest = sha256(content);
    const res = await call(`/v2/${repo}/blobs/uploads/?digest=${digest}`, {
      method: 'POST',
      headers: { ...auth, 'content-type': 'application/octet-stream' },
      body: content,
    });
    expect(res.status).toBe(201);
    return { digest, size: content.length };
  };

  /** Pushes a small image's blobs, and returns its manifest (not pushed). */
  const image = async (repo: string, auth: Record<string, string>) => {
    const config = await pushBlob(repo, Buffer.from(JSON.stringify({ r: randomBytes(4) })), auth);
    const layer = await pushBlob(repo, randomBytes(1024), auth);
    return Buffer.from(
      JSON.stringify({
        schemaVersion: 2,
        mediaType: oci.manifest,
        config: { mediaType: oci.config, ...config },
        layers: [{ mediaType: oci.layer, ...layer }],
      }),
    );
  };
  const putManifest = (repo: string, ref: string, bytes: Buffer, auth: Record<string, string>) =>
    call(`/v2/${repo}/manifests/${ref}`, {
      method: 'PUT',
      headers: { ...auth, 'content-type': oci.manifest },
      body: bytes,
    });

  it('answers the ping without credentials with 401 and the Bearer challenge (docker login)', async () => {
    const response = await call('/v2/');
    expect(response.status).toBe(401);
    expect(await codeOf(response)).toBe('UNAUTHORIZED');
    expect(response.headers.get('www-authenticate')).toBe(
      `Bearer realm="${proxy.url}/auth/token",service="shoal"`,
    );
    expect((await call('/v2/', { headers: await token('alice') })).status).toBe(200);
  });

  it('refuses a push without credentials with 401 and a challenge for the repository', async () => {
    const repo = `${team}/app`;
    const response = await call(`/v2/${repo}/blobs/uploads/`, { method: 'POST' });
    expect(response.status).toBe(401);
    expect(response.headers.get('www-authenticate')).toBe(
      `Bearer realm="${proxy.url}/auth/token",service="shoal",scope="${pushScope(repo)}"`,
    );
  });

  it('delays and counts a failed login', async () => {
    const started = Date.now();
    const response = await call('/auth/token?service=shoal', {
      headers: { authorization: `Basic ${Buffer.from('alice:wrong').toString('base64')}` },
    });
    expect(response.status).toBe(401);
    expect(Date.now() - started).toBeGreaterThanOrEqual(190);
    // On the registry API too, with the OCI error body and the challenge.
    const v2 = await call('/v2/', {
      headers: { authorization: `Basic ${Buffer.from('bob:wrong').toString('base64')}` },
    });
    expect(v2.status).toBe(401);
    expect(await codeOf(v2)).toBe('UNAUTHORIZED');
    expect(v2.headers.get('www-authenticate')).toContain('Bearer realm=');
    const metrics = await (await call('/metrics')).text();
    expect(metrics).toMatch(
      /shoal_auth_failed_logins_total\{method="basic",service="proxy"\} [1-9]/,
    );
  });

  it('grants a token only what the policies allow: a pull-only user is DENIED push and delete', async () => {
    const repo = `${team}/readable`;
    const alice = await token('alice', pushScope(repo));
    const manifest = await image(repo, alice);
    expect((await putManifest(repo, 'v1', manifest, alice)).status).toBe(201);

    const reader = await token('reader', pushScope(repo), `repository:${repo}:delete`);
    const claims = JSON.parse(
      Buffer.from(reader.authorization.split('.')[1] as string, 'base64url').toString(),
    ) as { access: Array<{ name: string; actions: string[] }> };
    expect(claims.access).toEqual([
      { type: 'repository', name: repo, actions: ['pull'] },
      { type: 'repository', name: repo, actions: [] },
    ]);
    expect((await call(`/v2/${repo}/manifests/v1`, { headers: reader })).status).toBe(200);
    const push = await call(`/v2/${repo}/blobs/uploads/`, { method: 'POST', headers: reader });
    expect(push.status).toBe(403);
    expect(await codeOf(push)).toBe('DENIED');
    const remove = await call(`/v2/${repo}/manifests/v1`, { method: 'DELETE', headers: reader });
    expect(remove.status).toBe(403);
    expect(await codeOf(remove)).toBe('DENIED');
    // Basic credentials straight on the API are checked the same way.
    const basicPush = await call(`/v2/${repo}/blobs/uploads/`, {
      method: 'POST',
      headers: { authorization: basic('reader') },
    });
    expect(basicPush.status).toBe(403);
  });

  it('asks for a new token when the one sent lacks the scope the policies allow', async () => {
    const repo = `${team}/scoped`;
    const pullOnly = await token('alice', `repository:${repo}:pull`);
    const response = await call(`/v2/${repo}/blobs/uploads/`, {
      method: 'POST',
      headers: pullOnly,
    });
    expect(response.status).toBe(401);
    expect(response.headers.get('www-authenticate')).toContain(
      `scope="${pushScope(repo)}",error="insufficient_scope"`,
    );
  });

  it('keeps tags immutable for users without overwrite; the same digest again is fine', async () => {
    const repo = `${team}/immutable`;
    const bob = await token('bob', pushScope(repo));
    const first = await image(repo, bob);
    const second = await image(repo, bob);
    expect((await putManifest(repo, 'v1', first, bob)).status).toBe(201);
    expect((await putManifest(repo, 'v1', first, bob)).status).toBe(201);
    const moved = await putManifest(repo, 'v1', second, bob);
    expect(moved.status).toBe(403);
    expect(await codeOf(moved)).toBe('DENIED');
    const get = await call(`/v2/${repo}/manifests/v1`, { headers: bob });
    expect(get.headers.get('docker-content-digest')).toBe(sha256(first));
    // alice may overwrite: her token for push carries it.
    const alice = await token('alice', pushScope(repo));
    expect((await putManifest(repo, 'v1', second, alice)).status).toBe(201);
  });

  it('mounts only from a repository the caller may pull; otherwise starts an upload (202)', async () => {
    const secret = `secret-${randomBytes(3).toString('hex')}/src`;
    const repo = `${team}/mounted`;
    const admin = await token('admin', pushScope(secret));
    const blob = await pushBlob(secret, randomBytes(512), admin);
    const alice = await token('alice', pushScope(repo), `repository:${secret}:pull`);
    const refused = await call(`/v2/${repo}/blobs/uploads/?mount=${blob.digest}&from=${secret}`, {
      method: 'POST',
      headers: alice,
    });
    expect(refused.status).toBe(202);
    expect(refused.headers.get('location')).toMatch(new RegExp(`^/v2/${repo}/blobs/uploads/`));
    const adminToo = await token('admin', pushScope(repo), `repository:${secret}:pull`);
    const mounted = await call(`/v2/${repo}/blobs/uploads/?mount=${blob.digest}&from=${secret}`, {
      method: 'POST',
      headers: adminToo,
    });
    expect(mounted.status).toBe(201);
  });

  it('lists in _catalog and tags/list only what the caller may pull', async () => {
    const repo = `${team}/listed`;
    const hidden = `hidden-${randomBytes(3).toString('hex')}/x`;
    const alice = await token('alice', pushScope(repo));
    expect((await putManifest(repo, 'v1', await image(repo, alice), alice)).status).toBe(201);
    const admin = await token('admin', pushScope(hidden));
    expect((await putManifest(hidden, 'v1', await image(hidden, admin), admin)).status).toBe(201);

    const catalogOf = async (auth: Record<string, string>) =>
      ((await (await call('/v2/_catalog', { headers: auth })).json()) as { repositories: string[] })
        .repositories;
    const forAlice = await catalogOf(await token('alice', 'registry:catalog:*'));
    expect(forAlice).toContain(repo);
    expect(forAlice).not.toContain(hidden);
    expect(await catalogOf(await token('admin', 'registry:catalog:*'))).toContain(hidden);
    const anonymous = await call('/v2/_catalog');
    expect(anonymous.status).toBe(401);
    expect(anonymous.headers.get('www-authenticate')).toContain('scope="registry:catalog:*"');

    const tags = await call(`/v2/${hidden}/tags/list`, { headers: await token('alice') });
    expect(tags.status).toBe(403);
  });

  it('lets anonymous callers do what the anonymous policy allows, with an anonymous token', async () => {
    const repo = `public/${randomBytes(3).toString('hex')}`;
    const admin = await token('admin', pushScope(repo));
    expect((await putManifest(repo, 'v1', await image(repo, admin), admin)).status).toBe(201);
    const anonymous = await token(undefined, `repository:${repo}:pull,push`);
    expect((await call(`/v2/${repo}/manifests/v1`, { headers: anonymous })).status).toBe(200);
    const push = await call(`/v2/${repo}/blobs/uploads/`, { method: 'POST', headers: anonymous });
    expect(push.status).toBe(401);
  });

  it('issues tokens and refresh tokens by POST, as containerd and oras ask', async () => {
    const repo = `${team}/posted`;
    const form = (fields: Record<string, string>) =>
      call('/auth/token', {
        method: 'POST',
        headers: { 'content-type': 'application/x-www-form-urlencoded' },
        body: new URLSearchParams(fields).toString(),
      });
    const first = await form({
      grant_type: 'password',
      username: 'alice',
      password: users.alice,
      scope: pushScope(repo),
      service: 'shoal',
      client_id: 'test',
      access_type: 'offline',
    });
    expect(first.status).toBe(200);
    const { access_token, refresh_token } = (await first.json()) as Record<string, string>;
    expect(refresh_token).toBeDefined();
    const push = await call(`/v2/${repo}/blobs/uploads/`, {
      method: 'POST',
      headers: { authorization: `Bearer ${access_token}` },
    });
    expect(push.status).toBe(202);
    // A refresh token is no access token.
    const misuse = await call('/v2/', { headers: { authorization: `Bearer ${refresh_token}` } });
    expect(misuse.status).toBe(401);
    const refreshed = await form({
      grant_type: 'refresh_token',
      refresh_token: refresh_token as string,
      scope: pushScope(repo),
      service: 'shoal',
    });
    expect(refreshed.status).toBe(200);
    expect((await refreshed.json()) as object).toMatchObject({ access_token: expect.any(String) });
    const wrong = await form({ grant_type: 'password', username: 'alice', password: 'nope' });
    expect(wrong.status).toBe(401);
  });

  it('records who pushed and moved a tag, with the client address', async () => {
    const repo = `${team}/audited`;
    const alice = await token('alice', pushScope(repo));
    const first = await image(repo, alice);
    const second = await image(repo, alice);
    expect((await putManifest(repo, 'v1', first, alice)).status).toBe(201);
    expect((await putManifest(repo, 'v1', second, { authorization: basic('alice') })).status).toBe(
      201,
    );
    const events: RecordedEvent[] = [];
    for await (const event of log.read(1)) {
      if ('repo' in event.data && event.data.repo === repo) events.push(event);
    }
    const tagPushes = events.filter((e) => e.type === 'TagPushed');
    expect(tagPushes).toHaveLength(2);
    for (const event of events) {
      expect(event.metadata).toMatchObject({ actor: 'user:alice', client: '127.0.0.1' });
    }
  });
});

import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { createMemoryProjectionStore } from '../../adapters/projection-store/memory/memoryProjectionStore';
import { buildIndexProjection, tagHistoryProjection } from '../../projections';
import type { OriginHarness } from '../../test/doubles/originHarness';
import { createOriginHarness } from '../../test/doubles/originHarness';
import { sha256 } from '../../test/fixtures/blobs';
import { createTagService } from '../build-index/tagService';
import { createBlobAccess, staticRing } from '../origin/client/createBlobAccess';
import { ProxyConfigSchema } from '../proxy/config';
import type { RunningProxy } from '../proxy/main';
import { startProxy } from '../proxy/main';
import { systemClock } from '../shared/clock';
import { validateConfig } from '../shared/config';
import { silentLogger } from '../shared/logger';
import { createProjectionRunner } from '../shared/projectionRunner';
import { TrackerConfigSchema } from '../tracker/config';
import type { RunningTracker } from '../tracker/main';
import { startTracker } from '../tracker/main';
import { AgentConfigSchema } from './config';
import type { RunningAgent } from './main';
import { startAgent } from './main';
import { openSecurity } from '../shared/security/roleSecurity';
import { freePort } from '../../test/fixtures/ports';

// The agent with auth.required: its localhost registry takes the proxy's tokens only, sends
// clients without one to the proxy's token endpoint, and serves a repository only what the
// proxy says that repository holds — a token for one repository reads none of another's
// blobs, even by digest.

const oci = {
  manifest: 'application/vnd.oci.image.manifest.v1+json',
  config: 'application/vnd.oci.image.config.v1+json',
  layer: 'application/vnd.oci.image.layer.v1.tar',
};

describe('the agent with access required', () => {
  let harness: OriginHarness;
  let proxy: RunningProxy;
  let tracker: RunningTracker;
  let agent: RunningAgent;
  let stopTags: () => Promise<void>;
  const suffix = randomBytes(3).toString('hex');
  const priv = `priv-${suffix}/app`;
  const other = `other-${suffix}/app`;
  const layer = randomBytes(256 * 1024);
  let manifestDigest: string;

  const basic = (user: string) => `Basic ${Buffer.from(`${user}:${user}-pw`).toString('base64')}`;
  const token = async (user: string | undefined, scope: string) => {
    const response = await fetch(
      `${proxy.url}/auth/token?service=shoal&scope=${encodeURIComponent(scope)}`,
      { headers: user === undefined ? {} : { authorization: basic(user) } },
    );
    expect(response.status).toBe(200);
    return { authorization: `Bearer ${((await response.json()) as { token: string }).token}` };
  };

  beforeAll(async () => {
    harness = createOriginHarness();
    const origin = await harness.start({ p2p: { port: await freePort() } });
    const htpasswd = join(harness.dir, 'htpasswd');
    writeFileSync(
      htpasswd,
      ['alice', 'bob']
        .map((u) =>
          execFileSync('htpasswd', ['-nbB', '-C', '5', u, `${u}-pw`], { encoding: 'utf8' }).trim(),
        )
        .join('\n'),
    );
    proxy = await startProxy({
      config: validateConfig(ProxyConfigSchema, {
        listen: { port: 0 },
        auth: {
          htpasswd: { file: htpasswd },
          policies: [
            { repositories: [priv, other], users: ['alice'], actions: ['pull', 'push'] },
            { repositories: [other], users: ['bob'], actions: ['pull'] },
          ],
        },
      }),
      logger: silentLogger(),
      clock: systemClock,
      log: harness.log,
      store: createMemoryProjectionStore(),
      blobs: createBlobAccess({ ring: staticRing([{ id: '1', url: origin.url }]), replicas: 1 }),
      localTags: createTagService,
      security: { ...openSecurity, mode: 'required' },
    });
    // alice pushes an image to her private repository, and something to the other one.
    const alice = await token('alice', `repository:${priv}:pull,push`);
    const push = async (repo: string, bytes: Buffer) => {
      const response = await fetch(
        `${proxy.url}/v2/${repo}/blobs/uploads/?digest=${sha256(bytes)}`,
        { method: 'POST', headers: alice, body: bytes },
      );
      expect(response.status).toBe(201);
      return { digest: sha256(bytes), size: bytes.length };
    };
    const config = await push(priv, Buffer.from('{}'));
    const manifest = Buffer.from(
      JSON.stringify({
        schemaVersion: 2,
        mediaType: oci.manifest,
        config: { mediaType: oci.config, ...config },
        layers: [{ mediaType: oci.layer, ...(await push(priv, layer)) }],
      }),
    );
    manifestDigest = sha256(manifest);
    const put = await fetch(`${proxy.url}/v2/${priv}/manifests/v1`, {
      method: 'PUT',
      headers: { ...alice, 'content-type': oci.manifest },
      body: manifest,
    });
    expect(put.status).toBe(201);
    const aliceOther = await token('alice', `repository:${other}:pull,push`);
    const small = Buffer.from('other');
    const response = await fetch(
      `${proxy.url}/v2/${other}/blobs/uploads/?digest=${sha256(small)}`,
      { method: 'POST', headers: aliceOther, body: small },
    );
    expect(response.status).toBe(201);

    tracker = await startTracker({
      config: validateConfig(TrackerConfigSchema, {
        listen: { port: 0 },
        origins: { urls: [origin.url] },
        announce: { intervalMs: 300 },
      }),
      logger: silentLogger(),
      clock: systemClock,
    });
    // The agent's tags, on the cluster's log (as build-index answers them).
    const store = createMemoryProjectionStore();
    const runner = createProjectionRunner({
      log: harness.log,
      store,
      projections: [buildIndexProjection, tagHistoryProjection],
    });
    runner.start();
    stopTags = () => runner.stop();
    agent = await startAgent({
      config: validateConfig(AgentConfigSchema, {
        dataDir: harness.dir,
        listen: { port: 0 },
        trackers: { urls: [tracker.url] },
        proxy: { url: proxy.url },
        cache: { fsync: false },
        auth: { required: true },
      }),
      logger: silentLogger(),
      clock: systemClock,
      tags: createTagService({
        log: harness.log,
        store,
        writer: { clock: systemClock, cluster: 'test', actor: 'test' },
        waitFor: (position) => runner.waitFor(position, 5000),
      }),
    });
  }, 60_000);

  afterAll(async () => {
    await agent?.close();
    await tracker?.close();
    await proxy?.close();
    await stopTags?.();
    await harness?.cleanup();
  });

  const codeOf = async (response: Response) =>
    ((await response.json()) as { errors: Array<{ code: string }> }).errors[0]?.code;

  it('sends a client without a token to the proxy`s token endpoint', async () => {
    const ping = await fetch(`${agent.url}/v2/`);
    expect(ping.status).toBe(401);
    expect(ping.headers.get('www-authenticate')).toBe(
      `Bearer realm="${proxy.url}/auth/token",service="shoal"`,
    );
    const pull = await fetch(`${agent.url}/v2/${priv}/manifests/v1`);
    expect(pull.status).toBe(401);
    expect(pull.headers.get('www-authenticate')).toContain(`scope="repository:${priv}:pull"`);
    const anonymous = await token(undefined, `repository:${priv}:pull`);
    expect(
      (await fetch(`${agent.url}/v2/${priv}/manifests/v1`, { headers: anonymous })).status,
    ).toBe(401);
  });

  it('serves a repository to a token that grants pull on it', async () => {
    const alice = await token('alice', `repository:${priv}:pull`);
    const manifest = await fetch(`${agent.url}/v2/${priv}/manifests/v1`, { headers: alice });
    expect(manifest.status).toBe(200);
    expect(manifest.headers.get('docker-content-digest')).toBe(manifestDigest);
    await manifest.arrayBuffer();
    const blob = await fetch(`${agent.url}/v2/${priv}/blobs/${sha256(layer)}`, { headers: alice });
    expect(blob.status).toBe(200);
    expect(sha256(Buffer.from(await blob.arrayBuffer()))).toBe(sha256(layer));
  }, 30_000);

  it('refuses another repository`s content, even by digest through a repository one may pull', async () => {
    const bob = await token('bob', `repository:${other}:pull repository:${priv}:pull`);
    const denied = await fetch(`${agent.url}/v2/${priv}/blobs/${sha256(layer)}`, { headers: bob });
    expect(denied.status).toBe(401);
    const smuggled = await fetch(`${agent.url}/v2/${other}/blobs/${sha256(layer)}`, {
      headers: bob,
    });
    expect(smuggled.status).toBe(404);
    expect(await codeOf(smuggled)).toBe('BLOB_UNKNOWN');
    const manifest = await fetch(`${agent.url}/v2/${other}/manifests/${manifestDigest}`, {
      headers: bob,
    });
    expect(manifest.status).toBe(404);
    const generic = await fetch(`${agent.url}/blobs/${sha256(layer)}`, { headers: bob });
    expect(generic.status).toBe(403);
  }, 30_000);
});

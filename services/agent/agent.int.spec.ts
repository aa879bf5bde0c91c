import type { Digest, RepoName } from '../../domain';
import { ShoalError } from '../../domain';
import type { TagApi } from '../build-index/client/tagApi';
import { createOriginClient } from '../origin/client/originClient';
import { blobFixture, sha256 } from '../../test/fixtures/blobs';
import { randomRepo } from '../../test/fixtures/events';
import type { OriginHarness } from '../../test/doubles/originHarness';
import { createOriginHarness } from '../../test/doubles/originHarness';
import { systemClock } from '../shared/clock';
import { validateConfig } from '../shared/config';
import { silentLogger } from '../shared/logger';
import { TrackerConfigSchema } from '../tracker/config';
import type { RunningTracker } from '../tracker/main';
import { startTracker } from '../tracker/main';
import { AgentConfigSchema } from './config';
import type { RunningAgent } from './main';
import { startAgent } from './main';
import { freePort } from '../../test/fixtures/ports';

const MiB = 1024 * 1024;

/** Tags as build-index would answer them: one repository, tags moved by the test. */
const fakeTags = (repo: string, tags: Map<string, string>): TagApi => ({
  get: async (ref) => {
    const digest = tags.get(ref.tag);
    if (ref.repo !== repo || digest === undefined) {
      throw new ShoalError('TAG_UNKNOWN', `${ref.repo}:${ref.tag} is unknown`);
    }
    return { repo, tag: ref.tag, digest: digest as Digest, position: 1, at: '' };
  },
  list: async (name) => {
    if (name !== repo) throw new ShoalError('NAME_UNKNOWN', 'unknown repository');
    return { tags: [...tags.keys()].sort() };
  },
  catalog: async () => ({ repositories: [repo] }),
  put: async () => {
    throw new Error('read-only');
  },
  delete: async () => {
    throw new Error('read-only');
  },
  history: async () => [],
});

describe('the agent (registry on the swarm)', () => {
  let harness: OriginHarness;
  let tracker: RunningTracker;
  let agents: RunningAgent[];
  let originUrl: string;
  const repo = randomRepo() as RepoName;
  const layer = blobFixture(3 * MiB);
  const manifestBytes = Buffer.from(
    JSON.stringify({
      schemaVersion: 2,
      mediaType: 'application/vnd.oci.image.manifest.v1+json',
      config: {
        mediaType: 'application/vnd.oci.image.config.v1+json',
        digest: layer.digest,
        size: 1,
      },
      layers: [
        {
          mediaType: 'application/vnd.oci.image.layer.v1.tar',
          digest: layer.digest,
          size: layer.size,
        },
      ],
    }),
  );
  const manifestDigest = sha256(manifestBytes);
  const tags = new Map([['v1', manifestDigest]]);

  const agent = async (id: string, quotaBytes = 64 * MiB) => {
    const started = await startAgent({
      config: validateConfig(AgentConfigSchema, {
        id,
        dataDir: harness.dir,
        listen: { port: 0 },
        trackers: { urls: [tracker.url] },
        cache: { quotaBytes, fsync: false },
      }),
      logger: silentLogger(),
      clock: systemClock,
      tags: fakeTags(repo, tags),
    });
    agents.push(started);
    return started;
  };

  beforeAll(async () => {
    harness = createOriginHarness();
    agents = [];
    const origin = await harness.start({ p2p: { port: await freePort() } });
    originUrl = origin.url;
    const client = createOriginClient(origin.url);
    await client.putBlob(layer.digest, layer.content, { repo, size: layer.size });
    await client.putBlob(manifestDigest, manifestBytes, { repo, size: manifestBytes.length });
    await client.close();
    tracker = await startTracker({
      config: validateConfig(TrackerConfigSchema, {
        listen: { port: 0 },
        origins: { urls: [origin.url] },
        announce: { intervalMs: 300 },
      }),
      logger: silentLogger(),
      clock: systemClock,
    });
  }, 30_000);

  afterAll(async () => {
    await Promise.all(agents.map((a) => a.close()));
    await tracker?.close();
    await harness?.cleanup();
  });

  it('pulls a manifest by tag and by digest, and blobs whole and by range', async () => {
    const a = await agent('a');
    const ping = await fetch(`${a.url}/v2/`);
    expect(ping.status).toBe(200);
    expect(ping.headers.get('docker-distribution-api-version')).toBe('registry/2.0');

    const byTag = await fetch(`${a.url}/v2/${repo}/manifests/v1?ns=registry.example.com`);
    expect(byTag.status).toBe(200);
    expect(byTag.headers.get('content-type')).toBe('application/vnd.oci.image.manifest.v1+json');
    expect(byTag.headers.get('docker-content-digest')).toBe(manifestDigest);
    expect(Buffer.from(await byTag.arrayBuffer()).equals(manifestBytes)).toBe(true);
    const head = await fetch(`${a.url}/v2/${repo}/manifests/${manifestDigest}`, { method: 'HEAD' });
    expect(head.headers.get('content-length')).toBe(String(manifestBytes.length));

    const blobResponse = await fetch(`${a.url}/v2/${repo}/blobs/${layer.digest}`);
    // Not kept alive: Node's keep-alive timeout would cut a slow reader's buffered tail.
    expect(blobResponse.headers.get('connection')).toBe('close');
    const whole = Buffer.from(await blobResponse.arrayBuffer());
    expect(sha256(whole)).toBe(layer.digest);
    const part = await fetch(`${a.url}/v2/${repo}/blobs/${layer.digest}`, {
      headers: { range: 'bytes=1000-1999' },
    });
    expect(part.status).toBe(206);
    expect(part.headers.get('content-range')).toBe(`bytes 1000-1999/${layer.size}`);
    expect(Buffer.from(await part.arrayBuffer()).equals(layer.content.subarray(1000, 2000))).toBe(
      true,
    );
    const generic = await fetch(`${a.url}/blobs/${layer.digest}`, { method: 'HEAD' });
    expect(generic.headers.get('content-length')).toBe(String(layer.size));
  }, 30_000);

  it('resolves tags on every request: a moved tag is never stale', async () => {
    const a = agents[0] ?? (await agent('a'));
    const other = Buffer.from(JSON.stringify({ schemaVersion: 2, manifests: [] }));
    // Served through the swarm: the origin must hold it.
    const origin = createOriginClient(
      (await harness.start({ id: 'o2', p2p: { port: await freePort() } })).url,
    );
    await origin.putBlob(sha256(other), other, { repo, size: other.length });
    await origin.close();
    tags.set('moving', manifestDigest);
    const first = await fetch(`${a.url}/v2/${repo}/manifests/moving`);
    expect(first.headers.get('docker-content-digest')).toBe(manifestDigest);
    await first.arrayBuffer();
    tags.set('moving', sha256(other));
    const second = await fetch(`${a.url}/v2/${repo}/manifests/moving`);
    expect(second.headers.get('docker-content-digest')).toBe(sha256(other));
    const list = (await (await fetch(`${a.url}/v2/${repo}/tags/list`)).json()) as {
      tags: string[];
    };
    expect(list.tags).toEqual(['moving', 'v1']);
    tags.delete('moving');
  }, 30_000);

  it('answers UNSUPPORTED to writes and OCI errors to unknown content', async () => {
    const a = agents[0] ?? (await agent('a'));
    const put = await fetch(`${a.url}/v2/${repo}/manifests/v2`, { method: 'PUT', body: '{}' });
    expect(put.status).toBe(405);
    expect(((await put.json()) as { errors: Array<{ code: string }> }).errors[0]?.code).toBe(
      'UNSUPPORTED',
    );
    const upload = await fetch(`${a.url}/v2/${repo}/blobs/uploads/`, { method: 'POST' });
    expect(upload.status).toBe(405);
    const missingTag = await fetch(`${a.url}/v2/${repo}/manifests/nope`);
    expect(missingTag.status).toBe(404);
    expect(((await missingTag.json()) as { errors: Array<{ code: string }> }).errors[0]?.code).toBe(
      'MANIFEST_UNKNOWN',
    );
    const missingBlob = await fetch(`${a.url}/v2/${repo}/blobs/${blobFixture(5).digest}`);
    expect(missingBlob.status).toBe(404);
    expect(
      ((await missingBlob.json()) as { errors: Array<{ code: string }> }).errors[0]?.code,
    ).toBe('BLOB_UNKNOWN');
  }, 30_000);

  it('a second agent gets the blob from the first as well as from the origin', async () => {
    const b = await agent('b');
    const bytes = Buffer.from(await (await fetch(`${b.url}/blobs/${layer.digest}`)).arrayBuffer());
    expect(sha256(bytes)).toBe(layer.digest);
    const status = (await (await fetch(`${b.url}/internal/p2p`)).json()) as {
      totals: { bytesDownloaded: number };
    };
    expect(status.totals.bytesDownloaded).toBeGreaterThanOrEqual(layer.size);
    const metrics = await (await fetch(`${b.url}/metrics`)).text();
    expect(metrics).toMatch(/shoal_agent_p2p_downloaded_bytes_total\{[^}]*\} [1-9]/);
  }, 30_000);

  it('a tracker that answers late (down, then up) does not fail the pull', async () => {
    const port = await freePort();
    const late = await startAgent({
      config: validateConfig(AgentConfigSchema, {
        id: 'late',
        dataDir: harness.dir,
        listen: { port: 0 },
        trackers: { urls: [`http://127.0.0.1:${port}`], timeoutMs: 2000 },
        cache: { quotaBytes: 64 * MiB, fsync: false },
      }),
      logger: silentLogger(),
      clock: systemClock,
      tags: fakeTags(repo, tags),
    });
    agents.push(late);
    const pull = fetch(`${late.url}/blobs/${layer.digest}`);
    // The metainfo lookup fails (connection refused) and is retried while the tracker starts.
    await new Promise((resolve) => setTimeout(resolve, 1500));
    const second = await startTracker({
      config: validateConfig(TrackerConfigSchema, {
        listen: { port },
        origins: { urls: [originUrl] },
        announce: { intervalMs: 300 },
      }),
      logger: silentLogger(),
      clock: systemClock,
    });
    try {
      const response = await pull;
      expect(response.status).toBe(200);
      expect(sha256(Buffer.from(await response.arrayBuffer()))).toBe(layer.digest);
    } finally {
      await late.close();
      agents.splice(agents.indexOf(late), 1);
      await second.close();
    }
  }, 30_000);

  it('evicts least recently used blobs beyond the quota, never a pinned one', async () => {
    const small = await agent('small', 4 * MiB);
    const other = blobFixture(2 * MiB);
    const origin = createOriginClient(
      (await harness.start({ id: 'o3', p2p: { port: await freePort() } })).url,
    );
    await origin.putBlob(other.digest, other.content, { repo, size: other.size });
    await origin.close();
    const get = async (digest: string) => {
      const response = await fetch(`${small.url}/blobs/${digest}`);
      const body = Buffer.from(await response.arrayBuffer());
      if (response.status !== 200) throw new Error(`${response.status}: ${body.toString()}`);
      return body;
    };
    expect(sha256(await get(layer.digest))).toBe(layer.digest);
    // The layer's swarm still seeds it (pinned): the quota is exceeded rather than evict it.
    expect(sha256(await get(other.digest))).toBe(other.digest);
    const status = async () =>
      (
        (await (await fetch(`${small.url}/internal/p2p`)).json()) as {
          cache: { used: number; evictions: number };
        }
      ).cache;
    expect((await status()).evictions).toBe(0);
    // Once the layer's swarm is left, it is evicted to bring the cache back under quota.
    const swarm = small.host.swarms().find((s) => s.digest === layer.digest);
    await swarm?.leave();
    const deadline = Date.now() + 5000;
    while ((await status()).evictions === 0 && Date.now() < deadline) {
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
    expect((await status()).evictions).toBe(1);
    expect((await status()).used).toBeLessThanOrEqual(4 * MiB);
  }, 30_000);
});

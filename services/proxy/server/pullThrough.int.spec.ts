import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Digest, RecordedEvent, RepoName, Tag } from '../../../domain';
import { ShoalError } from '../../../domain';
import { createMemoryEventLog } from '../../../adapters/eventlog';
import { createMemoryProjectionStore } from '../../../adapters/projection-store/memory/memoryProjectionStore';
import {
  buildIndexProjection,
  manifestIndexProjection,
  tagHistoryProjection,
} from '../../../projections';
import type { TagApi } from '../../build-index/client/tagApi';
import { createTagService } from '../../build-index/tagService';
import { createHttpApp } from '../../shared/http';
import { silentLogger } from '../../shared/logger';
import { createProjectionRunner } from '../../shared/projectionRunner';
import { createDistribution } from '../distribution';
import { createFsBlobAccess } from '../../../test/doubles/fsBlobAccess';
import type { RecheckResult } from '../tagFreshness';
import { distributionRoutes } from './routes';
import { sha256 } from '../../../test/fixtures/blobs';

const oci = {
  manifest: 'application/vnd.oci.image.manifest.v1+json',
  index: 'application/vnd.oci.image.index.v1+json',
  config: 'application/vnd.oci.image.config.v1+json',
  layer: 'application/vnd.oci.image.layer.v1.tar+gzip',
};

/** An upstream registry's content: manifests by tag and digest, blobs by digest. */
type Upstream = {
  manifests: Map<string, { bytes: Buffer; mediaType: string }>;
  blobs: Map<string, Buffer>;
};

/** A two-platform image as an upstream holds it: an index, two manifests, configs, layers. */
const multiPlatformImage = (upstream: Upstream, tag: string) => {
  const children = ['amd64', 'arm64'].map((architecture) => {
    const config = Buffer.from(JSON.stringify({ architecture, os: 'linux', r: randomBytes(4) }));
    const layer = randomBytes(3000);
    upstream.blobs.set(sha256(config), config);
    upstream.blobs.set(sha256(layer), layer);
    const bytes = Buffer.from(
      JSON.stringify({
        schemaVersion: 2,
        mediaType: oci.manifest,
        config: { mediaType: oci.config, digest: sha256(config), size: config.length },
        layers: [{ mediaType: oci.layer, digest: sha256(layer), size: layer.length }],
      }),
    );
    upstream.manifests.set(sha256(bytes), { bytes, mediaType: oci.manifest });
    return { architecture, bytes, digest: sha256(bytes), config, layer };
  });
  const index = Buffer.from(
    JSON.stringify({
      schemaVersion: 2,
      mediaType: oci.index,
      manifests: children.map((c) => ({
        mediaType: oci.manifest,
        digest: c.digest,
        size: c.bytes.length,
        platform: { os: 'linux', architecture: c.architecture },
      })),
    }),
  );
  upstream.manifests.set(tag, { bytes: index, mediaType: oci.index });
  upstream.manifests.set(sha256(index), { bytes: index, mediaType: oci.index });
  return { index, digest: sha256(index), children };
};

/** Tags are rechecked upstream this long after their last check (the spec moves its clock). */
const recheckMs = 60_000;
/** A pull waits this long for a recheck. */
const waitMs = 300;

describe('pull-through of manifests and tags (proxy routes over a BlobAccess double)', () => {
  const upstream: Upstream = { manifests: new Map(), blobs: new Map() };
  /** Upstream manifest requests, by reference (GETs) and as `HEAD <tag>` (rechecks). */
  const asked: string[] = [];
  let down = false;
  /** While set, upstream requests wait for it (an upstream that hangs). */
  let hung: Promise<void> | undefined;
  /** Added to the proxy's clock: past a tag's recheck time without waiting for it. */
  let clockOffset = 0;
  /** How rechecks ended, in order (the metric's `result`). */
  const rechecks: RecheckResult[] = [];
  let recheckSeen: ((result: RecheckResult) => void) | undefined;
  const nextRecheck = () =>
    new Promise<RecheckResult>((resolve) => {
      recheckSeen = resolve;
    });
  let url: string;
  let tags: TagApi;
  let events: () => Promise<RecordedEvent[]>;
  let seedBlobs: () => Promise<void>;
  let close: () => Promise<void>;

  beforeAll(async () => {
    const dir = mkdtempSync(join(tmpdir(), 'shoal-proxy-pull-'));
    const log = createMemoryEventLog();
    // The proxy's projections, kept by the real runner on the memory projection store.
    const store = createMemoryProjectionStore();
    const runner = createProjectionRunner({
      log,
      store,
      projections: [manifestIndexProjection, buildIndexProjection, tagHistoryProjection],
    });
    runner.start();
    const writer = {
      clock: { now: () => Date.now() + clockOffset },
      cluster: 'test',
      actor: 'proxy',
    };
    const waitFor = (position: number) => runner.waitFor(position, 2000);
    // Only `hub/…` is pulled through, as an origin routes it to a `registry` backend.
    const blobs = await createFsBlobAccess({
      dir,
      log,
      writer,
      pullsThrough: (repo) => repo.startsWith('hub/'),
      upstream: async (repo, reference, method) => {
        if (!repo.startsWith('hub/')) return undefined;
        asked.push(method === 'HEAD' ? `HEAD ${reference}` : reference);
        await new Promise((resolve) => setTimeout(resolve, 30));
        await hung;
        if (down) throw new ShoalError('STORAGE_UNAVAILABLE', 'upstream cannot be reached');
        return upstream.manifests.get(reference);
      },
    });
    // The blobs' bytes as the origins would fill them from the upstream on a read (the
    // double has no fill): stored under another repository, so only the pull links them.
    seedBlobs = async () => {
      for (const [digest, bytes] of upstream.blobs) {
        if ((await blobs.stat(digest as Digest)) === undefined) {
          await blobs.put(digest as Digest, bytes, { repo: 'seed/bytes' as RepoName });
        }
      }
    };
    tags = createTagService({ log, store, writer, waitFor });
    const distribution = createDistribution({
      log,
      store,
      blobs,
      tags,
      writer,
      waitFor,
      limits: { manifestMaxBytes: 64 * 1024, manifestCacheBytes: 1024 * 1024 },
      freshness: {
        recheckMs,
        waitMs,
        count: (result) => {
          rechecks.push(result);
          recheckSeen?.(result);
        },
      },
    });
    const { app } = createHttpApp({ service: 'proxy', logger: silentLogger() });
    await app.register(distributionRoutes(distribution, { manifestMaxBytes: 64 * 1024, waitFor }));
    await app.listen({ host: '127.0.0.1', port: 0 });
    url = `http://127.0.0.1:${(app.server.address() as AddressInfo).port}`;
    events = async () => {
      const out: RecordedEvent[] = [];
      for await (const event of log.read(1)) out.push(event);
      return out;
    };
    close = async () => {
      await app.close();
      await runner.stop();
      await store.close();
      rmSync(dir, { recursive: true, force: true });
    };
  });
  afterAll(() => close());
  beforeEach(() => {
    asked.length = 0;
    rechecks.length = 0;
    down = false;
    hung = undefined;
  });

  const call = (path: string, init: RequestInit = {}) => fetch(`${url}${path}`, init);
  const codeOf = async (response: Response) =>
    ((await response.json()) as { errors: Array<{ code: string }> }).errors[0]?.code;
  const pushedOf = (all: RecordedEvent[], repo: string) =>
    all.filter(
      (e): e is RecordedEvent<'ManifestPushed'> =>
        e.type === 'ManifestPushed' && e.data.repo === repo,
    );

  it('pulls a multi-platform tag through: index, children, links, tag with history', async () => {
    const repo = 'hub/library/app';
    const image = multiPlatformImage(upstream, 'v1');
    const res = await call(`/v2/${repo}/manifests/v1`);
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toBe(oci.index);
    expect(res.headers.get('docker-content-digest')).toBe(image.digest);
    expect(Buffer.from(await res.arrayBuffer()).equals(image.index)).toBe(true);
    // Children were pulled by digest; nothing else was asked of the upstream.
    expect([...asked].sort()).toEqual(['v1', ...image.children.map((c) => c.digest)].sort());
    const all = await events();
    await seedBlobs();
    for (const child of image.children) {
      const got = await call(`/v2/${repo}/manifests/${child.digest}`);
      expect(got.status).toBe(200);
      expect(Buffer.from(await got.arrayBuffer()).equals(child.bytes)).toBe(true);
      for (const blob of [child.config, child.layer]) {
        const head = await call(`/v2/${repo}/blobs/${sha256(blob)}`, { method: 'HEAD' });
        expect([head.status, head.headers.get('content-length')]).toEqual([
          200,
          String(blob.length),
        ]);
        const link = all.find(
          (e) =>
            e.type === 'BlobUploaded' && e.data.repo === repo && e.data.digest === sha256(blob),
        );
        expect(link?.metadata.actor).toBe('pull-through');
        const bytes = await call(`/v2/${repo}/blobs/${sha256(blob)}`);
        expect(Buffer.from(await bytes.arrayBuffer()).equals(blob)).toBe(true);
      }
    }
    // As a push leaves it: children before the index, each once, the index referencing them.
    const pushed = pushedOf(all, repo);
    expect(pushed.map((e) => e.data.digest)).toHaveLength(3);
    expect(pushed[2]?.data).toMatchObject({
      digest: image.digest,
      mediaType: oci.index,
      references: image.children.map((c) => c.digest),
    });
    const history = await tags.history({ repo: repo as RepoName, tag: 'v1' as Tag });
    expect(history.map((h) => [h.kind, h.digest])).toEqual([['pushed', image.digest]]);
    expect(await (await call(`/v2/${repo}/tags/list`)).json()).toEqual({
      name: repo,
      tags: ['v1'],
    });
  });

  const digestOf = async (repo: string, reference: string, method = 'GET') => {
    const res = await call(`/v2/${repo}/manifests/${reference}`, { method });
    expect(res.status).toBe(200);
    await res.arrayBuffer();
    return res.headers.get('docker-content-digest');
  };
  /** Moves the proxy's clock past the recheck time of every tag it checked so far. */
  const pastRecheckTime = () => {
    clockOffset += recheckMs + 1;
  };

  it('serves a tag it has from Shoal within the recheck time, not asking the upstream', async () => {
    const repo = 'hub/library/kept';
    const image = multiPlatformImage(upstream, 'v1');
    expect(await digestOf(repo, 'v1')).toBe(image.digest);
    asked.length = 0;
    // The upstream moved the tag: within the recheck time Shoal's tag stands.
    multiPlatformImage(upstream, 'v1');
    clockOffset += recheckMs - 1000;
    for (const method of ['GET', 'HEAD'])
      expect(await digestOf(repo, 'v1', method)).toBe(image.digest);
    expect(asked).toEqual([]);
    expect(rechecks).toEqual([]);
  });

  it('moves a tag that moved upstream once the recheck time has passed, with history', async () => {
    const repo = 'hub/library/moving';
    const first = multiPlatformImage(upstream, 'v1');
    expect(await digestOf(repo, 'v1')).toBe(first.digest);
    const second = multiPlatformImage(upstream, 'v1');
    expect(await digestOf(repo, 'v1')).toBe(first.digest);
    asked.length = 0;
    pastRecheckTime();
    const res = await call(`/v2/${repo}/manifests/v1`);
    expect(res.headers.get('docker-content-digest')).toBe(second.digest);
    expect(Buffer.from(await res.arrayBuffer()).equals(second.index)).toBe(true);
    // A HEAD of the tag, then the new index and its children as a first pull fetches them.
    expect(asked[0]).toBe('HEAD v1');
    expect([...asked.slice(1)].sort()).toEqual(
      ['v1', ...second.children.map((c) => c.digest)].sort(),
    );
    expect(rechecks).toEqual(['moved']);
    const history = await tags.history({ repo: repo as RepoName, tag: 'v1' as Tag });
    expect(history.map((h) => [h.kind, h.digest])).toEqual([
      ['pushed', first.digest],
      ['pushed', second.digest],
    ]);
    const pushed = pushedOf(await events(), repo).filter((e) => e.data.digest === second.digest);
    expect(pushed.map((e) => e.metadata.actor)).toEqual(['pull-through']);
    // Checked just now: the next pull is served from Shoal without asking.
    asked.length = 0;
    expect(await digestOf(repo, 'v1')).toBe(second.digest);
    expect(asked).toEqual([]);
    // Unchanged upstream: one HEAD, nothing fetched.
    pastRecheckTime();
    expect(await digestOf(repo, 'v1')).toBe(second.digest);
    expect(asked).toEqual(['HEAD v1']);
    expect(rechecks).toEqual(['moved', 'unchanged']);
  });

  it('serves the last known digest while the upstream is down, and keeps a tag gone upstream', async () => {
    const repo = 'hub/library/away';
    const image = multiPlatformImage(upstream, 'v1');
    expect(await digestOf(repo, 'v1')).toBe(image.digest);
    multiPlatformImage(upstream, 'v1');
    asked.length = 0;
    down = true;
    pastRecheckTime();
    for (const method of ['GET', 'HEAD'])
      expect(await digestOf(repo, 'v1', method)).toBe(image.digest);
    // A failed check counts as one: the upstream is asked again after the recheck time.
    expect(asked).toEqual(['HEAD v1']);
    expect(rechecks).toEqual(['failed']);
    down = false;
    upstream.manifests.delete('v1');
    pastRecheckTime();
    expect(await digestOf(repo, 'v1')).toBe(image.digest);
    expect(rechecks).toEqual(['failed', 'gone']);
  });

  it('answers the last known digest when a check outlasts the wait, and moves the tag after', async () => {
    const repo = 'hub/library/slow';
    const image = multiPlatformImage(upstream, 'v1');
    expect(await digestOf(repo, 'v1')).toBe(image.digest);
    const moved = multiPlatformImage(upstream, 'v1');
    let release = () => undefined as void;
    hung = new Promise<void>((resolve) => {
      release = resolve;
    });
    pastRecheckTime();
    const timedOut = nextRecheck();
    expect(await digestOf(repo, 'v1')).toBe(image.digest);
    expect(await timedOut).toBe('timeout');
    // The check goes on; once the upstream answers, the tag moves.
    const done = nextRecheck();
    hung = undefined;
    release();
    expect(await done).toBe('moved');
    expect(await digestOf(repo, 'v1')).toBe(moved.digest);
  });

  it('makes one upstream check for concurrent pulls of a tag due for one', async () => {
    const repo = 'hub/library/crowd';
    const first = multiPlatformImage(upstream, 'v1');
    expect(await digestOf(repo, 'v1')).toBe(first.digest);
    const second = multiPlatformImage(upstream, 'v1');
    asked.length = 0;
    pastRecheckTime();
    const answers = await Promise.all(
      Array.from({ length: 6 }, (_, i) => digestOf(repo, 'v1', i % 2 === 0 ? 'GET' : 'HEAD')),
    );
    expect(answers).toEqual(Array.from({ length: 6 }, () => second.digest));
    expect(asked.filter((r) => r === 'HEAD v1')).toHaveLength(1);
    expect(asked.filter((r) => r === 'v1')).toHaveLength(1);
    expect(rechecks).toEqual(['moved']);
  });

  it('never rechecks a pull by digest', async () => {
    const repo = 'hub/library/pinned';
    const image = multiPlatformImage(upstream, 'v1');
    expect(await digestOf(repo, image.digest)).toBe(image.digest);
    multiPlatformImage(upstream, 'v1');
    asked.length = 0;
    pastRecheckTime();
    for (const method of ['GET', 'HEAD']) {
      expect(await digestOf(repo, image.digest, method)).toBe(image.digest);
    }
    expect(asked).toEqual([]);
    expect(rechecks).toEqual([]);
  });

  it('shares one pull among concurrent misses of the same reference', async () => {
    const repo = 'hub/library/busy';
    const image = multiPlatformImage(upstream, 'v2');
    const answers = await Promise.all(
      Array.from({ length: 6 }, (_, i) =>
        call(`/v2/${repo}/manifests/v2`, { method: i % 2 === 0 ? 'GET' : 'HEAD' }),
      ),
    );
    expect(answers.map((r) => r.status)).toEqual([200, 200, 200, 200, 200, 200]);
    expect(asked.filter((r) => r === 'v2')).toHaveLength(1);
    const pushed = pushedOf(await events(), repo).filter((e) => e.data.digest === image.digest);
    expect(pushed).toHaveLength(1);
  });

  it('pulls a manifest by digest without tagging it', async () => {
    const repo = 'hub/library/bydigest';
    const image = multiPlatformImage(upstream, 'v3');
    const child = image.children[0] as { digest: Digest; bytes: Buffer };
    const res = await call(`/v2/${repo}/manifests/${child.digest}`);
    expect(res.status).toBe(200);
    expect(Buffer.from(await res.arrayBuffer()).equals(child.bytes)).toBe(true);
    const listed = await call(`/v2/${repo}/tags/list`);
    expect(await listed.json()).toEqual({ name: repo, tags: [] });
  });

  it('answers MANIFEST_UNKNOWN for what the upstream lacks and 503 while it is down', async () => {
    const missing = await call('/v2/hub/library/app/manifests/nope');
    expect([missing.status, await codeOf(missing)]).toEqual([404, 'MANIFEST_UNKNOWN']);
    multiPlatformImage(upstream, 'later');
    down = true;
    const unavailable = await call('/v2/hub/library/down/manifests/later');
    expect([unavailable.status, await codeOf(unavailable)]).toEqual([503, 'UNAVAILABLE']);
    down = false;
    expect((await call('/v2/hub/library/down/manifests/later')).status).toBe(200);
  });

  it('leaves repositories outside pull-through namespaces as they were', async () => {
    multiPlatformImage(upstream, 'v1');
    const res = await call('/v2/local/app/manifests/v1');
    expect([res.status, await codeOf(res)]).toEqual([404, 'MANIFEST_UNKNOWN']);
    const invalid = await call('/v2/hub/library/app/manifests/.INVALID');
    expect(invalid.status).toBe(404);
    expect(asked).toEqual([]);
  });
});

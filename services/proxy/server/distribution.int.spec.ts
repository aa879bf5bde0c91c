import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { createMemoryEventLog } from '../../../adapters/eventlog';
import { createMemoryProjectionStore } from '../../../adapters/projection-store/memory/memoryProjectionStore';
import {
  buildIndexProjection,
  manifestIndexProjection,
  tagHistoryProjection,
} from '../../../projections';
import { createTagService } from '../../build-index/tagService';
import type { BlobAccess } from '../../origin/client/blobAccess';
import { createHttpApp } from '../../shared/http';
import { silentLogger } from '../../shared/logger';
import { createProjectionRunner } from '../../shared/projectionRunner';
import { createDistribution } from '../distribution';
import { createFsBlobAccess } from '../../../test/doubles/fsBlobAccess';
import { distributionRoutes } from './routes';
import { sha256 } from '../../../test/fixtures/blobs';

const oci = {
  manifest: 'application/vnd.oci.image.manifest.v1+json',
  index: 'application/vnd.oci.image.index.v1+json',
  config: 'application/vnd.oci.image.config.v1+json',
  layer: 'application/vnd.oci.image.layer.v1.tar+gzip',
};
const fresh = () => `int/repo-${randomBytes(3).toString('hex')}`;

describe('the OCI Distribution API (proxy routes over a BlobAccess double)', () => {
  const cutShort = new Set<string>();
  let url: string;
  let close: () => Promise<void>;
  let dir: string;

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'shoal-proxy-int-'));
    const log = createMemoryEventLog();
    // The proxy's projections, kept by the real runner on the memory projection store.
    const store = createMemoryProjectionStore();
    const runner = createProjectionRunner({
      log,
      store,
      projections: [manifestIndexProjection, buildIndexProjection, tagHistoryProjection],
    });
    runner.start();
    const writer = { clock: { now: () => Date.now() }, cluster: 'test', actor: 'proxy' };
    const waitFor = (position: number) => runner.waitFor(position, 2000);
    const fsBlobs = await createFsBlobAccess({ dir, log, writer });
    // Reads of the digests in `cutShort` fail half-way, as an origin's do when its fill
    // turns out not to match the digest.
    const blobs: BlobAccess = {
      ...fsBlobs,
      get: async (digest, range) => {
        const read = await fsBlobs.get(digest, range);
        if (!cutShort.has(digest)) return read;
        const half = Math.floor((read.end - read.start + 1) / 2);
        const source = read.stream;
        const stream = Readable.from(
          (async function* () {
            let sent = 0;
            for await (const chunk of source) {
              const bytes = chunk as Buffer;
              yield bytes.subarray(0, Math.max(0, half - sent));
              sent += bytes.length;
              if (sent >= half) throw new Error('digest mismatch upstream');
            }
          })(),
        );
        return { ...read, stream };
      },
    };
    const tags = createTagService({ log, store, writer, waitFor });
    const distribution = createDistribution({
      log,
      store,
      blobs,
      tags,
      writer,
      waitFor,
      limits: { manifestMaxBytes: 64 * 1024, manifestCacheBytes: 1024 * 1024 },
    });
    const { app } = createHttpApp({ service: 'proxy', logger: silentLogger() });
    await app.register(distributionRoutes(distribution, { manifestMaxBytes: 64 * 1024, waitFor }));
    await app.listen({ host: '127.0.0.1', port: 0 });
    url = `http://127.0.0.1:${(app.server.address() as AddressInfo).port}`;
    close = async () => {
      await app.close();
      await runner.stop();
      await store.close();
      rmSync(dir, { recursive: true, force: true });
    };
  });
  afterAll(() => close());

  const call = (path: string, init: RequestInit = {}) => fetch(`${url}${path}`, init);
  const codeOf = async (response: Response) =>
    ((await response.json()) as { errors: Array<{ code: string }> }).errors[0]?.code;

  const pushBlob = async (repo: string, content: Buffer) => {
    const digest = sha256(content);
    const res = await call(`/v2/${repo}/blobs/uploads/?digest=${digest}`, {
      method: 'POST',
      headers: { 'content-type': 'application/octet-stream' },
      body: content,
    });
    expect(res.status).toBe(201);
    return { digest, size: content.length };
  };

  const pushImage = async (repo: string, reference: string, extra: object = {}) => {
    const config = await pushBlob(repo, Buffer.from(JSON.stringify({ os: 'linux', r: fresh() })));
    const layer = await pushBlob(repo, randomBytes(2048));
    const body = JSON.stringify({
      schemaVersion: 2,
      mediaType: oci.manifest,
      config: { mediaType: oci.config, ...config },
      layers: [{ mediaType: oci.layer, ...layer }],
      ...extra,
    });
    const res = await call(`/v2/${repo}/manifests/${reference}`, {
      method: 'PUT',
      headers: { 'content-type': oci.manifest },
      body,
    });
    expect(res.status).toBe(201);
    return { digest: sha256(body), body, size: body.length, response: res, layer, config };
  };

  it('answers the ping with the API version header', async () => {
    const res = await call('/v2/');
    expect(res.status).toBe(200);
    expect(res.headers.get('docker-distribution-api-version')).toBe('registry/2.0');
  });

  it('uploads in chunks, refusing out-of-order chunks with 416 without losing the session', async () => {
    const repo = fresh();
    const content = randomBytes(1000);
    const start = await call(`/v2/${repo}/blobs/uploads/`, { method: 'POST' });
    expect(start.status).toBe(202);
    const location = start.headers.get('location') as string;
    expect(location).toMatch(new RegExp(`^/v2/${repo}/blobs/uploads/`));
    const patch = (body: Buffer, range: string) =>
      call(location, {
        method: 'PATCH',
        headers: { 'content-type': 'application/octet-stream', 'content-range': range },
        body,
      });
    expect((await patch(content.subarray(600), '600-999')).status).toBe(416);
    const first = await patch(content.subarray(0, 600), '0-599');
    expect(first.status).toBe(202);
    expect(first.headers.get('range')).toBe('0-599');
    const retry = await patch(content.subarray(0, 600), '0-599');
    expect(retry.status).toBe(416);
    const status = await call(location);
    expect(status.status).toBe(204);
    expect(status.headers.get('range')).toBe('0-599');
    expect(await patch(content.subarray(600), '600-999')).toHaveProperty('status', 202);
    const digest = sha256(content);
    const commit = await call(`${location}?digest=${digest}`, { method: 'PUT' });
    expect(commit.status).toBe(201);
    expect(commit.headers.get('location')).toBe(`/v2/${repo}/blobs/${digest}`);
    const get = await call(`/v2/${repo}/blobs/${digest}`);
    expect(Buffer.from(await get.arrayBuffer()).equals(content)).toBe(true);
  });

  it('serves byte ranges and refuses unsatisfiable ones', async () => {
    const repo = fresh();
    const content = randomBytes(100);
    const { digest } = await pushBlob(repo, content);
    const head = await call(`/v2/${repo}/blobs/${digest}`, { method: 'HEAD' });
    expect(head.headers.get('content-length')).toBe('100');
    expect(head.headers.get('docker-content-digest')).toBe(digest);
    const part = await call(`/v2/${repo}/blobs/${digest}`, { headers: { range: 'bytes=10-19' } });
    expect(part.status).toBe(206);
    expect(part.headers.get('content-range')).toBe('bytes 10-19/100');
    expect(Buffer.from(await part.arrayBuffer()).equals(content.subarray(10, 20))).toBe(true);
    const bad = await call(`/v2/${repo}/blobs/${digest}`, { headers: { range: 'bytes=200-' } });
    expect(bad.status).toBe(416);
    expect(bad.headers.get('content-range')).toBe('bytes */100');
  });

  it('cuts a download short when the origin stream fails, never completing it', async () => {
    const repo = fresh();
    const { digest, size } = await pushBlob(repo, randomBytes(256 * 1024));
    cutShort.add(digest);
    const response = await call(`/v2/${repo}/blobs/${digest}`);
    expect(response.status).toBe(200);
    expect(response.headers.get('content-length')).toBe(String(size));
    // The body ends in an error, not in a short body taken for the whole blob.
    await expect(response.arrayBuffer()).rejects.toThrow();
    cutShort.delete(digest);
    expect((await call(`/v2/${repo}/blobs/${digest}`)).status).toBe(200);
  });

  it('refuses a wrong digest and keeps the blob invisible', async () => {
    const repo = fresh();
    const content = randomBytes(50);
    const wrong = sha256('something else');
    const res = await call(`/v2/${repo}/blobs/uploads/?digest=${wrong}`, {
      method: 'POST',
      headers: { 'content-type': 'application/octet-stream' },
      body: content,
    });
    expect(res.status).toBe(400);
    expect(await codeOf(res)).toBe('DIGEST_INVALID');
    for (const digest of [wrong, sha256(content)]) {
      expect((await call(`/v2/${repo}/blobs/${digest}`, { method: 'HEAD' })).status).toBe(404);
    }
  });

  it('mounts a blob from another repository, or falls back to an upload session', async () => {
    const [from, to] = [fresh(), fresh()];
    const { digest } = await pushBlob(from, randomBytes(64));
    const mounted = await call(`/v2/${to}/blobs/uploads/?mount=${digest}&from=${from}`, {
      method: 'POST',
    });
    expect(mounted.status).toBe(201);
    expect(mounted.headers.get('location')).toBe(`/v2/${to}/blobs/${digest}`);
    expect((await call(`/v2/${to}/blobs/${digest}`)).status).toBe(200);
    const missing = sha256('nowhere');
    const fallback = await call(`/v2/${to}/blobs/uploads/?mount=${missing}&from=${from}`, {
      method: 'POST',
    });
    expect(fallback.status).toBe(202);
  });

  it('pushes a manifest by tag, pulls it by tag and digest, and moves the tag', async () => {
    const repo = fresh();
    const first = await pushImage(repo, 'latest');
    expect(first.response.headers.get('docker-content-digest')).toBe(first.digest);
    expect(Number(first.response.headers.get('shoal-position'))).toBeGreaterThan(0);
    for (const ref of ['latest', first.digest]) {
      const res = await call(`/v2/${repo}/manifests/${ref}`);
      expect(res.status).toBe(200);
      expect(res.headers.get('content-type')).toBe(oci.manifest);
      expect(res.headers.get('docker-content-digest')).toBe(first.digest);
      expect(await res.text()).toBe(first.body);
    }
    const head = await call(`/v2/${repo}/manifests/latest`, { method: 'HEAD' });
    expect(head.headers.get('content-length')).toBe(String(first.size));
    const second = await pushImage(repo, 'latest');
    const moved = await call(`/v2/${repo}/manifests/latest`, { method: 'HEAD' });
    expect(moved.headers.get('docker-content-digest')).toBe(second.digest);
  });

  it('refuses manifests that reference unknown blobs, are invalid or too large', async () => {
    const repo = fresh();
    const dangling = JSON.stringify({
      schemaVersion: 2,
      mediaType: oci.manifest,
      config: { mediaType: oci.config, digest: sha256('x'), size: 1 },
      layers: [],
    });
    const put = (body: string | Buffer, ref = 'v1') =>
      call(`/v2/${repo}/manifests/${ref}`, {
        method: 'PUT',
        headers: { 'content-type': oci.manifest },
        body,
      });
    const unknown = await put(dangling);
    expect([unknown.status, await codeOf(unknown)]).toEqual([400, 'MANIFEST_BLOB_UNKNOWN']);
    const invalid = await put('blablabla');
    expect([invalid.status, await codeOf(invalid)]).toEqual([400, 'MANIFEST_INVALID']);
    const large = await put(Buffer.alloc(65 * 1024, 0x20));
    expect([large.status, await codeOf(large)]).toEqual([413, 'SIZE_INVALID']);
    const wrongDigest = await put(dangling, sha256('other'));
    expect(await codeOf(wrongDigest)).toBe('DIGEST_INVALID');
    const badName = await call('/v2/UPPER/manifests/v1');
    expect([badName.status, await codeOf(badName)]).toEqual([400, 'NAME_INVALID']);
    const notATag = await call(`/v2/${repo}/manifests/.INVALID`);
    expect(notATag.status).toBe(404);
  });

  it('lists referrers of a subject, filtered by artifact type', async () => {
    const repo = fresh();
    const subject = sha256('a subject that need not exist yet');
    const subjectDescriptor = { mediaType: oci.manifest, digest: subject, size: 10 };
    const a = await pushImage(repo, 'sig', {
      artifactType: 'application/vnd.example.sig',
      subject: subjectDescriptor,
      annotations: { 'org.example.note': 'a' },
    });
    expect(a.response.headers.get('oci-subject')).toBe(subject);
    await pushImage(repo, 'sbom', { subject: subjectDescriptor });
    const all = await call(`/v2/${repo}/referrers/${subject}`);
    expect(all.headers.get('content-type')).toBe(oci.index);
    const index = (await all.json()) as { manifests: Array<Record<string, unknown>> };
    expect(index.manifests).toHaveLength(2);
    expect(index.manifests).toContainEqual({
      mediaType: oci.manifest,
      digest: a.digest,
      size: a.size,
      artifactType: 'application/vnd.example.sig',
      annotations: { 'org.example.note': 'a' },
    });
    const filtered = await call(
      `/v2/${repo}/referrers/${subject}?artifactType=application/vnd.example.sig`,
    );
    expect(filtered.headers.get('oci-filters-applied')).toBe('artifactType');
    expect(((await filtered.json()) as { manifests: unknown[] }).manifests).toHaveLength(1);
    const none = await call(`/v2/${repo}/referrers/${sha256('nothing')}`);
    expect([none.status, ((await none.json()) as { manifests: unknown[] }).manifests]).toEqual([
      200,
      [],
    ]);
  });

  it('pages tags and the catalog with Link headers', async () => {
    const repo = fresh();
    const image = await pushImage(repo, 'a');
    for (const tag of ['b', 'c', 'd']) {
      const res = await call(`/v2/${repo}/manifests/${tag}`, {
        method: 'PUT',
        headers: { 'content-type': oci.manifest },
        body: image.body,
      });
      expect(res.status).toBe(201);
    }
    const page = await call(`/v2/${repo}/tags/list?n=2`);
    expect(await page.json()).toEqual({ name: repo, tags: ['a', 'b'] });
    expect(page.headers.get('link')).toBe(`</v2/${repo}/tags/list?n=2&last=b>; rel="next"`);
    const next = await call(`/v2/${repo}/tags/list?n=2&last=b`);
    expect(await next.json()).toEqual({ name: repo, tags: ['c', 'd'] });
    expect(next.headers.get('link')).toBeNull();
    const catalog = (await (await call('/v2/_catalog')).json()) as { repositories: string[] };
    expect(catalog.repositories).toContain(repo);
    expect(catalog.repositories.some((r) => r.startsWith('~'))).toBe(false);
    expect((await call(`/v2/${fresh()}/tags/list`)).status).toBe(404);
  });

  it('deletes a tag, then the manifest with its other tags, then its unreferenced blobs', async () => {
    const repo = fresh();
    const image = await pushImage(repo, 'one');
    await call(`/v2/${repo}/manifests/two`, {
      method: 'PUT',
      headers: { 'content-type': oci.manifest },
      body: image.body,
    });
    const refused = await call(`/v2/${repo}/blobs/${image.layer.digest}`, { method: 'DELETE' });
    expect([refused.status, await codeOf(refused)]).toEqual([405, 'UNSUPPORTED']);
    expect((await call(`/v2/${repo}/manifests/one`, { method: 'DELETE' })).status).toBe(202);
    expect((await call(`/v2/${repo}/manifests/one`)).status).toBe(404);
    expect((await call(`/v2/${repo}/manifests/${image.digest}`, { method: 'DELETE' })).status).toBe(
      202,
    );
    expect((await call(`/v2/${repo}/manifests/two`)).status).toBe(404);
    expect((await call(`/v2/${repo}/manifests/${image.digest}`)).status).toBe(404);
    expect(
      (await call(`/v2/${repo}/blobs/${image.layer.digest}`, { method: 'DELETE' })).status,
    ).toBe(202);
    expect((await call(`/v2/${repo}/blobs/${image.layer.digest}`)).status).toBe(404);
  });
});

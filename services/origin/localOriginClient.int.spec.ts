import { Readable } from 'node:stream';
import type { RepoName } from '../../domain';
import { createBlobAccess, staticRing } from './client/createBlobAccess';
import type { OriginClient } from './client/originClient';
import { createOriginClient } from './client/originClient';
import type { RunningOrigin } from './main';
import type { OriginHarness } from '../../test/doubles/originHarness';
import { blobFixture } from '../../test/fixtures/blobs';
import { randomRepo } from '../../test/fixtures/events';
import { createOriginHarness } from '../../test/doubles/originHarness';
import { drain } from '../../test/fixtures/streams';
import { codeOf } from '../../test/fixtures/errors';

/** Requests the origin's HTTP server answered on `/internal/…` routes, from its metrics. */
const internalRequests = async (origin: RunningOrigin) => {
  const text = await (await fetch(`${origin.url}/metrics`)).text();
  let n = 0;
  for (const m of text.matchAll(
    /^shoal_http_requests_total\{[^}]*route="\/internal[^}]*\} (\d+)$/gm,
  )) {
    n += Number(m[1]);
  }
  return n;
};

// The in-process client must be the HTTP API without the hop: same answers, same errors.
describe.each([
  ['over HTTP', (origin: RunningOrigin) => createOriginClient(origin.url)],
  ['in-process', (origin: RunningOrigin) => origin.client],
])('the origin client %s', (_name, connect) => {
  let harness: OriginHarness;
  let origin: RunningOrigin;
  let client: OriginClient;

  beforeAll(async () => {
    harness = createOriginHarness();
    origin = await harness.start({ id: 'o1', writeBack: { startDelayMs: 600_000 } });
    client = connect(origin);
  });
  afterAll(async () => {
    await client.close();
    await harness.cleanup();
  });

  it('takes chunked uploads, checks offsets and digests, and serves what it took', async () => {
    const blob = blobFixture(300_000);
    const { id } = await client.startUpload({ repo: randomRepo() });
    const part = Readable.from([blob.content.subarray(0, 100_000)]);
    await expect(client.appendUpload(id, part, { offset: 0 })).resolves.toEqual({
      size: 100_000,
    });
    const misplaced = Readable.from([blob.content.subarray(100_000)]);
    expect(await codeOf(client.appendUpload(id, misplaced, { offset: 5 }))).toBe('RANGE_INVALID');
    await expect(client.uploadStatus(id)).resolves.toMatchObject({ size: 100_000 });
    const wrong = blobFixture(10).digest;
    expect(await codeOf(client.commitUpload(id, { digest: wrong }))).toBe('DIGEST_INVALID');
    const done = await client.commitUpload(id, {
      digest: blob.digest,
      body: Readable.from([blob.content.subarray(100_000)]),
    });
    expect(done).toMatchObject({ digest: blob.digest, size: blob.size });
    expect(done.position).toBeGreaterThan(0);
    expect(await codeOf(client.uploadStatus(id))).toBe('BLOB_UPLOAD_UNKNOWN');

    await expect(client.statBlob(blob.digest)).resolves.toEqual({ size: blob.size });
    const whole = await client.getBlob(blob.digest);
    expect(whole).toMatchObject({ size: blob.size, start: 0, end: blob.size - 1 });
    expect((await drain(whole.stream)).equals(blob.content)).toBe(true);
    const range = await client.getBlob(blob.digest, { range: { start: 7, end: 99 } });
    expect(range).toMatchObject({ size: blob.size, start: 7, end: 99 });
    expect((await drain(range.stream)).equals(blob.content.subarray(7, 100))).toBe(true);
    const beyond = client.getBlob(blob.digest, { range: { start: blob.size } });
    expect(await codeOf(beyond)).toBe('RANGE_INVALID');
  });

  it('stores whole blobs, and answers for unknown ones', async () => {
    const blob = blobFixture(2000);
    const put = await client.putBlob(blob.digest, blob.content, { repo: randomRepo() });
    expect(put).toMatchObject({ digest: blob.digest, size: blob.size });
    expect(put.position).toBeGreaterThan(0);
    const bad = blobFixture(2000);
    expect(await codeOf(client.putBlob(bad.digest, blob.content, { repo: randomRepo() }))).toBe(
      'DIGEST_INVALID',
    );
    const unknown = blobFixture(5).digest;
    await expect(client.statBlob(unknown)).resolves.toBeUndefined();
    expect(await codeOf(client.getBlob(unknown))).toBe('BLOB_UNKNOWN');
    expect(await codeOf(client.getBlob('sha256:nope'))).toBe('DIGEST_INVALID');
    expect(await codeOf(client.startUpload({ repo: 'Not/Valid' }))).toBe('NAME_INVALID');
    // Its write-back is pending: the local copy stays.
    expect(await codeOf(client.deleteBlob(blob.digest))).toBe('SERVICE_UNAVAILABLE');
    await expect(client.ring(blob.digest)).resolves.toMatchObject({
      self: 'o1',
      owners: ['o1'],
    });
    await expect(client.metainfo(blob.digest)).resolves.toMatchObject({
      digest: blob.digest,
      length: blob.size,
    });
  });
});

describe('BlobAccess with an in-process origin', () => {
  it('reaches it without HTTP', async () => {
    const harness = createOriginHarness();
    try {
      const origin = await harness.start({ id: 'o1', replicas: 1 });
      const access = createBlobAccess({
        ring: staticRing([{ id: 'o1', url: origin.url }]),
        replicas: 1,
        connect: (endpoint) => (endpoint.id === origin.id ? origin.client : undefined),
      });
      const before = await internalRequests(origin);
      const blob = blobFixture(70_000);
      const repo = randomRepo() as RepoName;
      const { id } = await access.startUpload({ repo });
      await access.appendUpload(id, Readable.from([blob.content]), { offset: 0 });
      await access.commitUpload(id, { digest: blob.digest, repo });
      const read = await access.get(blob.digest);
      expect((await drain(read.stream)).equals(blob.content)).toBe(true);
      expect(await internalRequests(origin)).toBe(before);
      await access.close();
    } finally {
      await harness.cleanup();
    }
  });
});

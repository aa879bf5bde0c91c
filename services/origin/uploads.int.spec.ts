import { randomUUID } from 'node:crypto';
import { existsSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { blobObjectName } from '../../domain';
import { MetainfoBuilder, infoHash, pieceLengthFor } from '../../p2p/metainfo';
import type { OriginClient } from './client/originClient';
import { createOriginClient } from './client/originClient';
import { openOriginDb } from './store/originDb';
import type { RunningOrigin } from './main';
import type { OriginHarness } from '../../test/doubles/originHarness';
import { blobFixture, sha256 } from '../../test/fixtures/blobs';
import { randomRepo } from '../../test/fixtures/events';
import { createOriginHarness } from '../../test/doubles/originHarness';
import { drain } from '../../test/fixtures/streams';
import { codeOf } from '../../test/fixtures/errors';

describe('origin upload sessions (real disk, real HTTP)', () => {
  let harness: OriginHarness;
  let origin: RunningOrigin;
  let client: OriginClient;

  beforeEach(async () => {
    harness = createOriginHarness();
    // Write-back waits: these tests look at the origin's own disk and the log.
    origin = await harness.start({ id: 'o1', writeBack: { startDelayMs: 60_000 } });
    client = createOriginClient(origin.url);
  });
  afterEach(async () => {
    await client.close();
    await harness.cleanup();
  });

  it('takes a monolithic upload: start, then commit with the whole body', async () => {
    const blob = blobFixture(200_000);
    const repo = randomRepo();
    const { id } = await client.startUpload({ repo });
    expect(id.startsWith(`${Buffer.from('o1').toString('base64url')}.`)).toBe(true);
    const done = await client.commitUpload(id, {
      digest: blob.digest,
      body: blob.content,
      mediaType: 'application/vnd.oci.image.layer.v1.tar',
    });
    expect(done).toMatchObject({ digest: blob.digest, size: blob.size });
    expect(done.position).toBeGreaterThan(0);

    const events = (await harness.events()).filter((e) => e.stream === `blob/${blob.digest}`);
    expect(events.map((e) => [e.type, e.data])).toEqual([
      [
        'BlobUploaded',
        {
          digest: blob.digest,
          size: blob.size,
          repo,
          mediaType: 'application/vnd.oci.image.layer.v1.tar',
        },
      ],
      ['BlobPlaced', { digest: blob.digest, origin: 'o1' }],
    ]);
    expect(events[1]?.position).toBe(done.position);
    const read = await client.getBlob(blob.digest);
    expect((await drain(read.stream)).equals(blob.content)).toBe(true);
    // The session is over.
    expect(await codeOf(client.uploadStatus(id))).toBe('BLOB_UPLOAD_UNKNOWN');
  });

  it('takes a chunked upload with offsets and Content-Range, reporting progress', async () => {
    const blob = blobFixture(300_001);
    const { id } = await client.startUpload({ repo: randomRepo() });
    const cut = [0, 100_000, 250_000, blob.size];
    for (let i = 0; i < cut.length - 1; i++) {
      const chunk = blob.content.subarray(cut[i], cut[i + 1]);
      const { size } = await client.appendUpload(id, Readable.from([chunk]), {
        offset: cut[i] as number,
      });
      expect(size).toBe(cut[i + 1]);
      await expect(client.uploadStatus(id)).resolves.toMatchObject({ size: cut[i + 1] });
    }
    const done = await client.commitUpload(id, { digest: blob.digest });
    expect(done.size).toBe(blob.size);

    // OCI-style headers on the raw API.
    const other = blobFixture(10);
    const second = await client.startUpload({ repo: randomRepo() });
    const patched = await fetch(`${origin.url}/internal/uploads/${second.id}`, {
      method: 'PATCH',
      headers: { 'content-range': '0-9', 'content-type': 'application/octet-stream' },
      body: other.content,
    });
    expect(patched.status).toBe(202);
    expect(patched.headers.get('range')).toBe('0-9');
    expect(patched.headers.get('upload-offset')).toBe('10');
  });

  it('refuses a chunk at the wrong offset (RANGE_INVALID, 416), writing nothing', async () => {
    const blob = blobFixture(1000);
    const { id } = await client.startUpload({ repo: randomRepo() });
    await client.appendUpload(id, blob.content.subarray(0, 400), { offset: 0 });
    expect(await codeOf(client.appendUpload(id, blob.content.subarray(400), { offset: 300 }))).toBe(
      'RANGE_INVALID',
    );
    const raw = await fetch(`${origin.url}/internal/uploads/${id}`, {
      method: 'PATCH',
      headers: { 'content-range': '500-599', 'content-type': 'application/octet-stream' },
      body: blob.content.subarray(500, 600),
    });
    expect(raw.status).toBe(416);
    expect(await raw.json()).toMatchObject({ code: 'RANGE_INVALID' });
    await expect(client.uploadStatus(id)).resolves.toMatchObject({ size: 400 });
    // The session goes on from where it is.
    await client.appendUpload(id, blob.content.subarray(400), { offset: 400 });
    await expect(client.commitUpload(id, { digest: blob.digest })).resolves.toMatchObject({
      size: 1000,
    });
  });

  it('refuses a wrong digest with DIGEST_INVALID; nothing becomes visible', async () => {
    const blob = blobFixture(5000);
    const wrong = blobFixture(5000).digest;
    const before = (await harness.events()).length;
    const { id } = await client.startUpload({ repo: randomRepo() });
    expect(await codeOf(client.commitUpload(id, { digest: wrong, body: blob.content }))).toBe(
      'DIGEST_INVALID',
    );
    await expect(client.statBlob(wrong)).resolves.toBeUndefined();
    await expect(client.statBlob(blob.digest)).resolves.toBeUndefined();
    expect(await codeOf(client.getBlob(wrong))).toBe('BLOB_UNKNOWN');
    expect((await harness.events()).length).toBe(before);
    expect(await harness.backend.stat(blobObjectName(wrong))).toBeUndefined();
    const blobsDir = join(origin.directory, 'blobs');
    expect(existsSync(blobsDir) ? readdirSync(blobsDir, { recursive: true }) : []).toEqual([]);
    // The session is still there: the right digest commits what was sent.
    await expect(client.commitUpload(id, { digest: blob.digest })).resolves.toMatchObject({
      size: 5000,
    });
  });

  it('refuses a whole-blob put whose content does not match, storing nothing', async () => {
    const blob = blobFixture(3000);
    const wrong = blobFixture(3000).digest;
    expect(await codeOf(client.putBlob(wrong, blob.content, { repo: randomRepo() }))).toBe(
      'DIGEST_INVALID',
    );
    await expect(client.statBlob(wrong, { local: true })).resolves.toBeUndefined();
    expect(readdirSync(join(origin.directory, 'tmp'))).toEqual([]);
    const stored = await client.putBlob(blob.digest, blob.content, { repo: randomRepo() });
    expect(stored).toMatchObject({ digest: blob.digest, size: 3000 });
    expect(stored.position).toBeGreaterThan(0);
  });

  it('resumes a session after the origin restarts, keeping what was received', async () => {
    const blob = blobFixture(700_000);
    const { id } = await client.startUpload({ repo: randomRepo() });
    await client.appendUpload(id, blob.content.subarray(0, 300_000), { offset: 0 });
    await origin.close();
    await client.close();

    origin = await harness.start({ id: 'o1', writeBack: { startDelayMs: 60_000 } });
    client = createOriginClient(origin.url);
    await expect(client.uploadStatus(id)).resolves.toMatchObject({ size: 300_000 });
    await client.appendUpload(id, blob.content.subarray(300_000), { offset: 300_000 });
    await expect(client.commitUpload(id, { digest: blob.digest })).resolves.toMatchObject({
      size: blob.size,
    });
    expect((await drain((await client.getBlob(blob.digest)).stream)).equals(blob.content)).toBe(
      true,
    );
  });

  it('finishes at the next start a commit that a crash cut before its events', async () => {
    const blob = blobFixture(40_000);
    const repo = randomRepo();
    const { id } = await client.startUpload({ repo });
    await client.appendUpload(id, blob.content, { offset: 0 });
    await origin.close();
    await client.close();
    // The state a crash leaves right after the commit was recorded in the origin's db.
    const db = openOriginDb(join(origin.directory, 'origin.db'));
    const eventIds: [string, string] = [randomUUID(), randomUUID()];
    db.commitUpload(id, { digest: blob.digest, size: blob.size, repo, eventIds }, [], Date.now());
    db.close();

    origin = await harness.start({ id: 'o1', writeBack: { startDelayMs: 60_000 } });
    client = createOriginClient(origin.url);
    const uploaded = await harness.waitForEvent((e) => e.id === eventIds[0]);
    expect(uploaded).toMatchObject({ type: 'BlobUploaded', data: { digest: blob.digest, repo } });
    await harness.waitForEvent((e) => e.id === eventIds[1]);
    expect((await drain((await client.getBlob(blob.digest)).stream)).equals(blob.content)).toBe(
      true,
    );
    expect(await codeOf(client.uploadStatus(id))).toBe('BLOB_UPLOAD_UNKNOWN');
    expect(readdirSync(join(origin.directory, 'uploads'))).toEqual([]);
  });

  it('keeps the bytes of a chunk cut short by the client, and goes on from there', async () => {
    const blob = blobFixture(400_000);
    const { id } = await client.startUpload({ repo: randomRepo() });
    const failing = Readable.from(
      (async function* () {
        yield blob.content.subarray(0, 64 * 1024);
        yield blob.content.subarray(64 * 1024, 128 * 1024);
        await new Promise((r) => setTimeout(r, 50));
        throw new Error('client went away');
      })(),
    );
    await expect(client.appendUpload(id, failing, { offset: 0 })).rejects.toThrow();
    // Operations on a session run one at a time: the status waits for the broken append.
    const { size } = await client.uploadStatus(id);
    expect(size).toBeLessThanOrEqual(128 * 1024);
    await client.appendUpload(id, blob.content.subarray(size), { offset: size });
    await expect(client.commitUpload(id, { digest: blob.digest })).resolves.toMatchObject({
      size: blob.size,
    });
  });

  it('cancels a session and forgets it; sessions of other origins are unknown here', async () => {
    const { id } = await client.startUpload({ repo: randomRepo() });
    await client.appendUpload(id, Buffer.from('abc'));
    await client.cancelUpload(id);
    expect(await codeOf(client.uploadStatus(id))).toBe('BLOB_UPLOAD_UNKNOWN');
    expect(readdirSync(join(origin.directory, 'uploads'))).toEqual([]);
    const foreign = `${Buffer.from('o2').toString('base64url')}.${id.split('.')[1]}`;
    expect(await codeOf(client.uploadStatus(foreign))).toBe('BLOB_UPLOAD_UNKNOWN');
    expect(await codeOf(client.uploadStatus('not-a-session'))).toBe('BLOB_UPLOAD_UNKNOWN');
  });

  it('serves byte ranges with 206 and Content-Range, and 416 beyond the end', async () => {
    const blob = blobFixture(10_000);
    await client.putBlob(blob.digest, blob.content, { repo: randomRepo() });
    const part = await client.getBlob(blob.digest, { range: { start: 100, end: 1099 } });
    expect(part).toMatchObject({ size: 10_000, start: 100, end: 1099 });
    expect((await drain(part.stream)).equals(blob.content.subarray(100, 1100))).toBe(true);

    const url = `${origin.url}/internal/blobs/${blob.digest}`;
    const suffix = await fetch(url, { headers: { range: 'bytes=-10' } });
    expect(suffix.status).toBe(206);
    expect(suffix.headers.get('content-range')).toBe('bytes 9990-9999/10000');
    expect(Buffer.from(await suffix.arrayBuffer()).equals(blob.content.subarray(9990))).toBe(true);

    const open = await fetch(url, { headers: { range: 'bytes=9000-' } });
    expect(open.headers.get('content-length')).toBe('1000');
    await open.arrayBuffer();

    const beyond = await fetch(url, { headers: { range: 'bytes=10000-' } });
    expect(beyond.status).toBe(416);
    expect(beyond.headers.get('content-range')).toBe('bytes */10000');
    expect(await beyond.json()).toMatchObject({ code: 'RANGE_INVALID' });

    const head = await fetch(url, { method: 'HEAD' });
    expect(head.status).toBe(200);
    expect(head.headers.get('content-length')).toBe('10000');
    expect(head.headers.get('docker-content-digest')).toBe(blob.digest);
  });

  it('serves the metainfo of an uploaded blob', async () => {
    const blob = blobFixture(600_000);
    const { id } = await client.startUpload({ repo: randomRepo() });
    await client.appendUpload(id, blob.content.subarray(0, 250_000));
    await client.commitUpload(id, { digest: blob.digest, body: blob.content.subarray(250_000) });
    const metainfo = await client.metainfo(blob.digest);
    const expected = new MetainfoBuilder(pieceLengthFor(blob.size)).update(blob.content).digest();
    expect(metainfo).toEqual(expected);
    const raw = await fetch(`${origin.url}/internal/blobs/${blob.digest}/metainfo`);
    expect(raw.headers.get('shoal-info-hash')).toBe(infoHash(expected));
    expect(sha256(blob.content)).toBe(blob.digest);
  });

  it('drops a local copy on DELETE, but not while its write-back is pending', async () => {
    const blob = blobFixture(100);
    await client.putBlob(blob.digest, blob.content, { repo: randomRepo() });
    expect(await codeOf(client.deleteBlob(blob.digest))).toBe('SERVICE_UNAVAILABLE');
    await expect(client.statBlob(blob.digest, { local: true })).resolves.toEqual({ size: 100 });
  });

  it('deletes sessions left idle past the expiry, and keeps active ones', async () => {
    await origin.close();
    await client.close();
    let now = Date.now();
    const clock = { now: () => now };
    origin = await harness.start({ id: 'o1', uploads: { expireAfterMs: 60_000 } }, { clock });
    client = createOriginClient(origin.url);
    const idle = await client.startUpload({ repo: randomRepo() });
    await client.appendUpload(idle.id, Buffer.from('abc'));
    now += 50_000;
    const active = await client.startUpload({ repo: randomRepo() });
    now += 20_000;
    await expect(origin.sweepUploads()).resolves.toBe(1);
    expect(await codeOf(client.uploadStatus(idle.id))).toBe('BLOB_UPLOAD_UNKNOWN');
    await expect(client.uploadStatus(active.id)).resolves.toMatchObject({ size: 0 });
    expect(readdirSync(join(origin.directory, 'uploads'))).toHaveLength(1);
  });

  it('refuses blobs over the size limit', async () => {
    await origin.close();
    await client.close();
    origin = await harness.start({ id: 'o1', uploads: { maxBlobSize: 1000 } });
    client = createOriginClient(origin.url);
    const blob = blobFixture(1001);
    const { id } = await client.startUpload({ repo: randomRepo() });
    expect(await codeOf(client.appendUpload(id, blob.content))).toBe('SIZE_INVALID');
    expect(await codeOf(client.putBlob(blob.digest, blob.content, { repo: randomRepo() }))).toBe(
      'SIZE_INVALID',
    );
  });

  it('answers health, the ring and metrics', async () => {
    await expect((await fetch(`${origin.url}/health`)).json()).resolves.toMatchObject({
      status: 'ok',
    });
    const ring = await client.ring(blobFixture(1).digest);
    expect(ring).toMatchObject({ self: 'o1', replicas: 2, owners: ['o1'] });
    expect(ring.members).toEqual([{ id: 'o1', address: origin.url }]);
    const metrics = await (await fetch(`${origin.url}/metrics`)).text();
    expect(metrics).toContain('shoal_origin_upload_sessions');
    expect(metrics).toContain('shoal_origin_jobs_pending');
  });
});

import { rmSync } from 'node:fs';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import type { RepoName } from '../../domain';
import { blobObjectName } from '../../domain';
import { owners } from '../../domain/placement';
import type { BlobAccess } from './client/blobAccess';
import { createBlobAccess, staticRing } from './client/createBlobAccess';
import type { OriginClient } from './client/originClient';
import { createOriginClient } from './client/originClient';
import type { RunningOrigin } from './main';
import type { OriginHarness } from '../../test/doubles/originHarness';
import { blobFixture } from '../../test/fixtures/blobs';
import { randomRepo } from '../../test/fixtures/events';
import { createOriginHarness } from '../../test/doubles/originHarness';
import { drain } from '../../test/fixtures/streams';

const localPath = (origin: RunningOrigin, digest: string) => {
  const hex = digest.slice('sha256:'.length);
  return join(origin.directory, 'blobs', 'sha256', hex.slice(0, 2), hex);
};

const placedOn = (harness: OriginHarness, digest: string, origin: string) =>
  harness.waitForEvent(
    (e) => e.type === 'BlobPlaced' && e.data.digest === digest && e.data.origin === origin,
  );

/** A digest whose first owner among `ids` is `first` (rendezvous is deterministic). */
const blobOwnedFirstBy = (first: string, ids: string[], replicas: number) => {
  for (;;) {
    const blob = blobFixture(20_000);
    if (owners(blob.digest, ids, replicas)[0] === first) return blob;
  }
};

/** An origin's `shoal_origin_egress_bytes_total` for one destination, from its `/metrics`. */
const egress = (metrics: string, destination: string): number =>
  Number(
    new RegExp(
      `^shoal_origin_egress_bytes_total\\{[^}]*destination="${destination}"[^}]*\\} (\\d+)$`,
      'm',
    ).exec(metrics)?.[1] ?? NaN,
  );

describe('origins on a ring (one log, R owners per blob)', () => {
  let harness: OriginHarness;
  let a: RunningOrigin;
  let b: RunningOrigin;
  let access: BlobAccess & { close: () => Promise<void> };
  const clients: OriginClient[] = [];
  const clientOf = (origin: RunningOrigin) => {
    const client = createOriginClient(origin.url);
    clients.push(client);
    return client;
  };

  beforeEach(async () => {
    harness = createOriginHarness();
    a = await harness.start({ id: 'a', replicas: 2 });
    b = await harness.start({ id: 'b', replicas: 2 });
    // Both must see both members before placement is stable.
    await a.runner.waitFor(await harness.log.head(), 5000);
    await b.runner.waitFor(await harness.log.head(), 5000);
    access = createBlobAccess({
      ring: staticRing([
        { id: 'a', url: a.url },
        { id: 'b', url: b.url },
      ]),
      replicas: 2,
    });
  });
  afterEach(async () => {
    await access.close();
    await Promise.all(clients.splice(0).map((c) => c.close()));
    await harness.cleanup();
  });

  it('records each origin once on the ring, and a restart appends nothing', async () => {
    const joins = async () =>
      (await harness.events()).filter((e) => e.type === 'OriginJoined').map((e) => e.data);
    expect(await joins()).toEqual([
      { id: 'a', address: a.url },
      { id: 'b', address: b.url },
    ]);
    const port = Number(new URL(a.url).port);
    await a.close();
    a = await harness.start({ id: 'a', replicas: 2, listen: { port } });
    expect(await joins()).toHaveLength(2);
    // Same id at a new address: membership is by id, so this only updates the address.
    await a.close();
    a = await harness.start({ id: 'a', replicas: 2 });
    expect((await joins()).map((j) => j.id)).toEqual(['a', 'b', 'a']);
    expect((await harness.events()).some((e) => e.type === 'OriginLeft')).toBe(false);
  });

  it('copies a blob committed on one origin to the other owner', async () => {
    const blob = blobFixture(120_000);
    const repo = randomRepo() as RepoName;
    const { id } = await access.startUpload({ repo });
    const first = id.startsWith(Buffer.from('a').toString('base64url')) ? 'a' : 'b';
    const other = first === 'a' ? 'b' : 'a';
    await access.appendUpload(id, Readable.from([blob.content.subarray(0, 50_000)]), {
      offset: 0,
    });
    const done = await access.commitUpload(id, {
      digest: blob.digest,
      repo,
      body: Readable.from([blob.content.subarray(50_000)]),
    });
    expect(done.size).toBe(blob.size);
    await placedOn(harness, blob.digest, first);
    await placedOn(harness, blob.digest, other);
    for (const origin of [a, b]) {
      const local = await clientOf(origin).getBlob(blob.digest, { local: true });
      expect((await drain(local.stream)).equals(blob.content)).toBe(true);
    }
    // Only the receiving origin recorded the upload and wrote it back.
    const events = (await harness.events()).filter((e) => e.stream === `blob/${blob.digest}`);
    expect(events.filter((e) => e.type === 'BlobUploaded')).toHaveLength(1);
    await harness.waitForEvent((e) => e.type === 'BlobPersisted' && e.data.digest === blob.digest);
    // The receiving origin's egress: the copy to the other owner, and the write-back.
    const metrics = await (await fetch(`${(first === 'a' ? a : b).url}/metrics`)).text();
    expect(egress(metrics, 'origin')).toBeGreaterThanOrEqual(blob.size);
    expect(egress(metrics, 'backend')).toBeGreaterThanOrEqual(blob.size);
  });

  it('reads through BlobAccess from the owners, whole and in ranges', async () => {
    const blob = blobFixture(50_000);
    const { position } = await access.put(blob.digest, blob.content, {
      repo: randomRepo() as RepoName,
    });
    expect(position).toBeGreaterThan(0);
    await expect(access.stat(blob.digest)).resolves.toEqual({ size: blob.size });
    const whole = await access.get(blob.digest);
    expect(whole).toMatchObject({ size: blob.size, start: 0, end: blob.size - 1 });
    expect((await drain(whole.stream)).equals(blob.content)).toBe(true);
    const part = await access.get(blob.digest, { start: 10, end: 19 });
    expect((await drain(part.stream)).equals(blob.content.subarray(10, 20))).toBe(true);
    await expect(access.stat(blobFixture(10).digest)).resolves.toBeUndefined();
    await expect(access.get(blobFixture(10).digest)).rejects.toMatchObject({
      code: 'BLOB_UNKNOWN',
    });
  });

  it('lets an owner lacking a blob fetch it from the backend, keep it and serve it', async () => {
    const blob = blobOwnedFirstBy('a', ['a', 'b'], 2);
    await clientOf(b).putBlob(blob.digest, blob.content, { repo: randomRepo() });
    await harness.waitForEvent((e) => e.type === 'BlobPersisted' && e.data.digest === blob.digest);
    await placedOn(harness, blob.digest, 'a');
    // Both owners lose their disks; only the backend has the blob now.
    for (const origin of [a, b]) rmSync(localPath(origin, blob.digest));
    await expect(clientOf(a).statBlob(blob.digest, { local: true })).resolves.toBeUndefined();

    const read = await access.get(blob.digest);
    expect((await drain(read.stream)).equals(blob.content)).toBe(true);
    // The first owner fetched it and kept it.
    await expect(clientOf(a).statBlob(blob.digest, { local: true })).resolves.toEqual({
      size: blob.size,
    });
    const metrics = await (await fetch(`${a.url}/metrics`)).text();
    expect(metrics).toMatch(/shoal_origin_fills_total\{[^}]*source="backend"[^}]*\} 1/);
  });

  it('lets an owner fetch a blob from the origin holding it before write-back', async () => {
    // c holds a blob it does not own, and has not copied it to the owners or written it back yet.
    const c = await harness.start({ id: 'c', replicas: 2, writeBack: { startDelayMs: 60_000 } });
    await Promise.all([a, b, c].map(async (o) => o.runner.waitFor(await harness.log.head(), 5000)));
    let blob = blobFixture(30_000);
    while (owners(blob.digest, ['a', 'b', 'c'], 2).includes('c')) blob = blobFixture(30_000);
    await clientOf(c).putBlob(blob.digest, blob.content, { repo: randomRepo() });
    expect(await harness.backend.stat(blobObjectName(blob.digest))).toBeUndefined();
    await expect(clientOf(a).statBlob(blob.digest, { local: true })).resolves.toBeUndefined();

    const read = await clientOf(a).getBlob(blob.digest);
    expect((await drain(read.stream)).equals(blob.content)).toBe(true);
    await placedOn(harness, blob.digest, 'a');
    const metrics = await (await fetch(`${a.url}/metrics`)).text();
    expect(metrics).toMatch(/shoal_origin_fills_total\{[^}]*source="peer"[^}]*\} 1/);
    // c counts what it sent a as egress to a peer origin (a's client names itself).
    expect(egress(await (await fetch(`${c.url}/metrics`)).text(), 'origin')).toBe(blob.size);
  });

  it('routes upload sessions by the origin in their id', async () => {
    const repo = randomRepo() as RepoName;
    const seen = new Set<string>();
    for (let i = 0; i < 8; i++) {
      const { id } = await access.startUpload({ repo });
      await access.appendUpload(id, Readable.from([Buffer.from('x')]), { offset: 0 });
      await expect(access.uploadStatus(id)).resolves.toEqual({ size: 1 });
      seen.add(id.split('.')[0] as string);
      await access.cancelUpload(id);
    }
    expect(seen.size).toBe(2);
    await expect(access.uploadStatus('bm9wZQ.AAAAAAAAAAAAAAAAAAAAAA')).rejects.toMatchObject({
      code: 'BLOB_UPLOAD_UNKNOWN',
    });
  });
});

import { rmSync } from 'node:fs';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import type { BlobStore } from '../../domain';
import { ShoalError, blobObjectName, isShoalError } from '../../domain';
import { createFilesystemBlobStore } from '../../adapters/blobstore/filesystem';
import { createBackendRouter } from './backendRouter';
import type { OriginClient } from './client/originClient';
import { createOriginClient } from './client/originClient';
import type { OriginHarness } from '../../test/doubles/originHarness';
import { blobFixture } from '../../test/fixtures/blobs';
import { createOriginHarness } from '../../test/doubles/originHarness';
import { drain } from '../../test/fixtures/streams';

/** A read-only view of a real store, as a pull-through backend looks to the origin. */
const readOnly = (inner: BlobStore, name: string): BlobStore => ({
  name,
  readOnly: true,
  stat: (key) => inner.stat(key),
  get: (key, range) => inner.get(key, range),
  put: () => Promise.reject(new ShoalError('UNSUPPORTED', `${name} is read-only`)),
  delete: () => Promise.reject(new ShoalError('UNSUPPORTED', `${name} is read-only`)),
  list: (prefix) => inner.list(prefix),
});

describe('origin backends routed by namespace', () => {
  let harness: OriginHarness;
  let teamA: BlobStore;
  let mirror: BlobStore;
  const clients: OriginClient[] = [];
  const clientOf = (url: string) => {
    const client = createOriginClient(url);
    clients.push(client);
    return client;
  };

  beforeEach(() => {
    harness = createOriginHarness();
    teamA = createFilesystemBlobStore({ root: join(harness.dir, 'team-a'), name: 'team-a' });
    mirror = createFilesystemBlobStore({ root: join(harness.dir, 'mirror'), name: 'mirror-src' });
  });
  afterEach(async () => {
    await Promise.all(clients.splice(0).map((c) => c.close()));
    await harness.cleanup();
  });

  const start = () =>
    harness.start(
      { id: 'o1', replicas: 1 },
      {
        routes: [
          { namespace: 'team-a/.*', store: teamA, prefix: 'a/' },
          { namespace: 'mirror/.*', store: readOnly(mirror, 'mirror') },
        ],
      },
    );

  it('writes each push back to the backend its repository routes to', async () => {
    const origin = await start();
    const client = clientOf(origin.url);
    const a = blobFixture(70_000);
    const other = blobFixture(50_000);
    const upload = await client.startUpload({ repo: 'team-a/app' });
    await client.commitUpload(upload.id, { digest: a.digest, body: a.content });
    await client.putBlob(other.digest, other.content, { repo: 'team-b/app' });
    const persisted = await Promise.all(
      [a, other].map((b) =>
        harness.waitForEvent((e) => e.type === 'BlobPersisted' && e.data.digest === b.digest),
      ),
    );
    expect(persisted.map((e) => e.data)).toEqual([
      { digest: a.digest, backend: 'team-a' },
      { digest: other.digest, backend: 'filesystem' },
    ]);
    // The bytes are where the events say, under team-a's prefix, and nowhere else.
    expect(await teamA.stat(blobObjectName(a.digest, 'a/'))).toEqual({ size: a.size });
    expect(await harness.backend.stat(blobObjectName(a.digest))).toBeUndefined();
    expect(await harness.backend.stat(blobObjectName(other.digest))).toEqual({
      size: other.size,
    });
    expect(await teamA.stat(blobObjectName(other.digest, 'a/'))).toBeUndefined();
  });

  it('a blob pushed to two namespaces is written back to both backends', async () => {
    const origin = await start();
    const client = clientOf(origin.url);
    const blob = blobFixture(10_000);
    await client.putBlob(blob.digest, blob.content, { repo: 'team-a/x' });
    await client.putBlob(blob.digest, blob.content, { repo: 'team-c/x' });
    const backends = new Set<string>();
    await harness.waitForEvent((e) => {
      if (e.type === 'BlobPersisted' && e.data.digest === blob.digest) backends.add(e.data.backend);
      return backends.size === 2;
    });
    expect([...backends].sort()).toEqual(['filesystem', 'team-a']);
  });

  it('an owner that lost a blob fills it from the right backend, with or without a hint', async () => {
    let origin = await start();
    let client = clientOf(origin.url);
    const blob = blobFixture(90_000);
    await client.putBlob(blob.digest, blob.content, { repo: 'team-a/app' });
    await harness.waitForEvent((e) => e.type === 'BlobPersisted' && e.data.digest === blob.digest);
    await origin.close();
    // The origin's disk is lost; team-a's backend is the only copy.
    rmSync(join(origin.directory, 'blobs'), { recursive: true, force: true });
    origin = await start();
    client = clientOf(origin.url);
    // No repository given: the log says which backend holds it.
    expect(await client.statBlob(blob.digest)).toEqual({ size: blob.size });
    const read = await client.getBlob(blob.digest);
    expect((await drain(read.stream)).equals(blob.content)).toBe(true);
  });

  it('serves a read-only namespace from its backend and refuses pushes to it', async () => {
    const origin = await start();
    const client = clientOf(origin.url);
    const blob = blobFixture(40_000);
    await mirror.put(blobObjectName(blob.digest), Readable.from([blob.content]));
    const read = await client.getBlob(blob.digest, { repo: 'mirror/library/alpine' });
    expect((await drain(read.stream)).equals(blob.content)).toBe(true);
    const refused = await client.startUpload({ repo: 'mirror/library/alpine' }).then(
      () => undefined,
      (error: unknown) => error,
    );
    expect(isShoalError(refused, 'UNSUPPORTED')).toBe(true);
    expect((refused as Error).message).toMatch(/read-only from backend "mirror"/);
    const put = await client.putBlob(blob.digest, blob.content, { repo: 'mirror/x' }).then(
      () => undefined,
      (error: unknown) => error,
    );
    expect(isShoalError(put, 'UNSUPPORTED')).toBe(true);
    // Nothing was queued for the read-only backend.
    const events = await harness.events();
    expect(events.filter((e) => e.type === 'BlobPersisted')).toEqual([]);
  });

  it('refuses two different backends under one name and a bad namespace pattern', () => {
    const other = createFilesystemBlobStore({ root: join(harness.dir, 'x'), name: 'team-a' });
    expect(() =>
      createBackendRouter({ store: harness.backend }, [
        { namespace: 'a/.*', store: teamA },
        { namespace: 'b/.*', store: other },
      ]),
    ).toThrow(/two different backends are named "team-a"/);
    expect(() =>
      createBackendRouter({ store: harness.backend }, [{ namespace: '(', store: teamA }]),
    ).toThrow(/not a valid regular expression/);
  });
});

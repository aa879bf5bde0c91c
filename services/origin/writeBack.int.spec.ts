import { Readable } from 'node:stream';
import type { BlobStore, RecordedEvent } from '../../domain';
import { ShoalError, blobObjectName } from '../../domain';
import type { OriginClient } from './client/originClient';
import { createOriginClient } from './client/originClient';
import type { OriginHarness } from '../../test/doubles/originHarness';
import { blobFixture } from '../../test/fixtures/blobs';
import { randomRepo } from '../../test/fixtures/events';
import { createOriginHarness } from '../../test/doubles/originHarness';
import { drain } from '../../test/fixtures/streams';

/** A backend whose puts fail until `heal()`; `attempted(n)` resolves at the n-th put. */
const flakyBackend = (inner: BlobStore) => {
  let healthy = false;
  let attempts = 0;
  const waiters: Array<{ n: number; resolve: () => void }> = [];
  const store: BlobStore = {
    name: inner.name,
    stat: (name) => inner.stat(name),
    get: (name, range) => inner.get(name, range),
    delete: (name) => inner.delete(name),
    list: (prefix) => inner.list(prefix),
    put: async (name, body, options) => {
      attempts++;
      for (const w of waiters.filter((w) => w.n <= attempts)) w.resolve();
      if (!healthy) {
        (body as Readable).destroy?.();
        throw new ShoalError('STORAGE_UNAVAILABLE', 'backend down');
      }
      return inner.put(name, body, options);
    },
  };
  return {
    store,
    attempted: (n: number) =>
      new Promise<void>((resolve) => {
        if (attempts >= n) resolve();
        else waiters.push({ n, resolve });
      }),
    heal: () => (healthy = true),
    attempts: () => attempts,
  };
};

describe('origin write-back (durable queue, filesystem backend)', () => {
  let harness: OriginHarness;
  const clients: OriginClient[] = [];
  const clientOf = (url: string) => {
    const client = createOriginClient(url);
    clients.push(client);
    return client;
  };

  beforeEach(() => {
    harness = createOriginHarness();
  });
  afterEach(async () => {
    await Promise.all(clients.splice(0).map((c) => c.close()));
    await harness.cleanup();
  });

  it('writes a committed blob back to the backend and appends BlobPersisted', async () => {
    const origin = await harness.start({ id: 'o1' });
    const client = clientOf(origin.url);
    const blob = blobFixture(150_000);
    const { id } = await client.startUpload({ repo: randomRepo() });
    const done = await client.commitUpload(id, { digest: blob.digest, body: blob.content });
    const persisted = await harness.waitForEvent(
      (e) => e.type === 'BlobPersisted' && e.data.digest === blob.digest,
    );
    expect(persisted.data).toEqual({ digest: blob.digest, backend: 'filesystem' });
    expect(persisted.position).toBeGreaterThan(done.position);
    const stored = await harness.backend.get(blobObjectName(blob.digest));
    expect((await drain(stored.stream)).equals(blob.content)).toBe(true);
  });

  it('skips the put when the backend has the blob already, and still records it', async () => {
    const blob = blobFixture(2000);
    await harness.backend.put(blobObjectName(blob.digest), Readable.from([blob.content]));
    const flaky = flakyBackend(harness.backend);
    flaky.heal();
    const origin = await harness.start({ id: 'o1' }, { backend: flaky.store });
    await clientOf(origin.url).putBlob(blob.digest, blob.content, { repo: randomRepo() });
    await harness.waitForEvent((e) => e.type === 'BlobPersisted' && e.data.digest === blob.digest);
    expect(flaky.attempts()).toBe(0);
  });

  it('records a blob persisted once, however often it is pushed', async () => {
    // Write-back jobs start with a backend stat: count them to know the second one ran.
    let stats = 0;
    let secondStat: () => void = () => undefined;
    const secondJob = new Promise<void>((resolve) => (secondStat = resolve));
    const counting: BlobStore = {
      ...harness.backend,
      name: harness.backend.name,
      stat: async (name) => {
        if (++stats === 2) secondStat();
        return harness.backend.stat(name);
      },
    };
    const origin = await harness.start({ id: 'o1' }, { backend: counting });
    const client = clientOf(origin.url);
    const blob = blobFixture(3000);
    const persisted = (e: RecordedEvent) =>
      e.type === 'BlobPersisted' && e.data.digest === blob.digest;
    await client.putBlob(blob.digest, blob.content, { repo: randomRepo() });
    await harness.waitForEvent(persisted);
    await client.putBlob(blob.digest, blob.content, { repo: randomRepo() });
    await secondJob;
    await origin.close(); // waits for the job in flight
    expect((await harness.events()).filter(persisted)).toHaveLength(1);
    expect((await harness.events()).filter((e) => e.type === 'BlobUploaded')).toHaveLength(2);
  });

  it('keeps a failed write-back queued across a restart, and completes it after', async () => {
    const blob = blobFixture(80_000);
    const flaky = flakyBackend(harness.backend);
    const first = await harness.start({ id: 'o1' }, { backend: flaky.store });
    await clientOf(first.url).putBlob(blob.digest, blob.content, { repo: randomRepo() });
    await flaky.attempted(1); // the worker ran and failed: the job waits for a retry
    await first.close();
    expect(await harness.backend.stat(blobObjectName(blob.digest))).toBeUndefined();

    // A new process on the same directory, with a backend that works.
    await harness.start({ id: 'o1' });
    const persisted = await harness.waitForEvent(
      (e) => e.type === 'BlobPersisted' && e.data.digest === blob.digest,
    );
    expect(persisted.data).toMatchObject({ digest: blob.digest });
    expect(await harness.backend.stat(blobObjectName(blob.digest))).toEqual({ size: blob.size });
    const persistedCount = (await harness.events()).filter(
      (e) => e.type === 'BlobPersisted' && e.data.digest === blob.digest,
    ).length;
    expect(persistedCount).toBe(1);
  });

  it('waits for the origin to be quiet: no write-back while an upload streams', async () => {
    const quietMs = 200;
    const origin = await harness.start({ id: 'o1', writeBack: { quietMs } });
    const client = clientOf(origin.url);
    const blob = blobFixture(5000);
    // An upload whose body stalls after its first chunk keeps the origin busy.
    let release: () => void = () => undefined;
    const released = new Promise<void>((resolve) => (release = resolve));
    let started: () => void = () => undefined;
    const streaming = new Promise<void>((resolve) => (started = resolve));
    const { id } = await client.startUpload({ repo: randomRepo() });
    const upload = client.appendUpload(
      id,
      Readable.from(
        (async function* () {
          yield Buffer.alloc(1000);
          started();
          await released;
          yield Buffer.alloc(1000);
        })(),
      ),
    );
    await streaming;
    await client.putBlob(blob.digest, blob.content, { repo: randomRepo() });
    // A negative can only be watched for a while: many quiet periods pass, no write-back.
    await new Promise((resolve) => setTimeout(resolve, quietMs * 5));
    const events = await harness.events();
    expect(events.some((e) => e.type === 'BlobPersisted')).toBe(false);
    expect(await harness.backend.stat(blobObjectName(blob.digest))).toBeUndefined();

    release();
    await upload;
    await harness.waitForEvent((e) => e.type === 'BlobPersisted' && e.data.digest === blob.digest);
  });

  it('retries with backoff until the backend recovers', async () => {
    const blob = blobFixture(1000);
    const flaky = flakyBackend(harness.backend);
    const origin = await harness.start(
      { id: 'o1', writeBack: { minBackoffMs: 10, maxBackoffMs: 40 } },
      { backend: flaky.store },
    );
    await clientOf(origin.url).putBlob(blob.digest, blob.content, { repo: randomRepo() });
    // Let it fail a few times, then heal the backend.
    await flaky.attempted(3);
    flaky.heal();
    await harness.waitForEvent((e) => e.type === 'BlobPersisted' && e.data.digest === blob.digest);
    const metrics = await (await fetch(`${origin.url}/metrics`)).text();
    expect(metrics).toMatch(/shoal_origin_jobs_total\{[^}]*kind="write-back"[^}]*outcome="failed"/);
    expect(metrics).toMatch(/shoal_origin_jobs_pending\{[^}]*kind="write-back"[^}]*\} 0/);
  });
});

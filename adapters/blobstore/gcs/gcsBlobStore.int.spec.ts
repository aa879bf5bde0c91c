import { execFileSync } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { Storage } from '@google-cloud/storage';
import type { BlobStore } from '../../../domain';
import { describeBlobStoreContract } from '../../../test/contracts/blobStoreContract';
import { createGcsBlobStore } from './gcsBlobStore';
import { codeOf } from '../../../test/fixtures/errors';

// The BlobStore contract against a real fake-gcs-server (test/services/gcs.sh). CI exports
// GCS_ENDPOINT; run alone, this spec starts the server itself (idempotent).
const script = join(__dirname, '../../../test/services/gcs.sh');
const service = (command: 'start' | 'stop'): string =>
  execFileSync('bash', [script, command], {
    encoding: 'utf8',
    stdio: ['ignore', 'pipe', 'inherit'],
    timeout: 600_000,
  });

let endpoint = process.env.GCS_ENDPOINT ?? '';
beforeAll(() => {
  if (endpoint !== '') return;
  endpoint = /^GCS_ENDPOINT=(.+)$/m.exec(service('start'))?.[1] ?? '';
  if (endpoint === '') throw new Error('test/services/gcs.sh start printed no GCS_ENDPOINT');
}, 900_000);

const projectId = 'shoal-test';
const MiB = 1024 * 1024;
const admin = () => new Storage({ apiEndpoint: endpoint, projectId });
const freshBucket = () => `shoal-${randomBytes(6).toString('hex')}`;

/** Empties and removes a test's bucket (best effort: names are random). */
const removeBucket = async (bucket: string) => {
  const handle = admin().bucket(bucket);
  await handle.deleteFiles({ force: true }).catch(() => undefined);
  await handle.delete().catch(() => undefined);
};

/** A fresh bucket and a store on it; cleanup removes the bucket. */
const bucketStore = async () => {
  const bucket = freshBucket();
  await admin().createBucket(bucket);
  created.push(bucket);
  const store = createGcsBlobStore({ endpoint, bucket, projectId });
  return { store, bucket, cleanup: () => removeBucket(bucket) };
};
const created: string[] = [];
afterAll(async () => {
  for (const bucket of created.splice(0)) await removeBucket(bucket);
});

// Bodies up to 8 MiB go in one request; the contract's objects are small, so a second run
// sends every non-empty body through a resumable upload in 256 KiB chunks.
describeBlobStoreContract('gcs', () => bucketStore(), { timeoutMs: 60_000 });
describeBlobStoreContract(
  'gcs (resumable uploads)',
  async () => {
    const { bucket, cleanup } = await bucketStore();
    const store = createGcsBlobStore({
      endpoint,
      bucket,
      projectId,
      resumableThresholdBytes: 0,
      chunkSizeBytes: 256 * 1024,
    });
    return { store, cleanup };
  },
  { timeoutMs: 60_000, largeObjectBytes: 2 * 1024 * 1024 + 5 },
);

const messageOf = async (promise: Promise<unknown>): Promise<string> =>
  promise.then(
    () => 'resolved',
    (error: unknown) => (error instanceof Error ? error.message : String(error)),
  );

/** `total` random bytes in 1 MiB chunks, never all in memory; `digest()` once consumed. */
const generated = (total: number, chunk = 1024 * 1024) => {
  const hash = createHash('sha256');
  const stream = Readable.from(
    (async function* () {
      for (let sent = 0; sent < total; sent += chunk) {
        const bytes = randomBytes(Math.min(chunk, total - sent));
        hash.update(bytes);
        yield bytes;
      }
    })(),
  );
  return { stream, digest: () => hash.digest('hex') };
};

// A full collection before each RSS sample, so the samples count what is held, not garbage
// that V8 has not collected yet (it lets external memory pile up to the object's size).
setFlagsFromString('--expose-gc');
const gc = runInNewContext('gc') as () => void;

/** Runs `work` while sampling RSS every 25 ms; resolves with its result and the peak growth. */
const peakRssGrowth = async <T>(work: () => Promise<T>) => {
  gc();
  const before = process.memoryUsage().rss;
  let peak = before;
  const sample = () => {
    gc();
    peak = Math.max(peak, process.memoryUsage().rss);
  };
  const timer = setInterval(sample, 25);
  try {
    const result = await work();
    sample();
    return { result, growth: peak - before };
  } finally {
    clearInterval(timer);
  }
};

const sockets = () => process.getActiveResourcesInfo().filter((r) => r === 'TCPSocketWrap').length;

describe('gcs BlobStore specifics', () => {
  let store: BlobStore;
  let cleanup: () => Promise<void>;
  beforeEach(async () => {
    ({ store, cleanup } = await bucketStore());
  });
  afterEach(async () => cleanup());

  it('round-trips 40 MiB through a resumable upload with bounded memory', async () => {
    const { bucket } = await bucketStore();
    const chunked = createGcsBlobStore({
      endpoint,
      bucket,
      projectId,
      resumableThresholdBytes: 2 * MiB,
      // The emulator's cost per chunk grows with the object (see the README's backends
      // bench): 4 MiB chunks keep its work, not ours, from timing the test out under load.
      chunkSizeBytes: 4 * MiB,
    });
    const total = 40 * MiB;
    const body = generated(total, 64 * 1024);
    const put = await peakRssGrowth(() => chunked.put('big/object', body.stream, { size: total }));
    expect(put.result).toEqual({ size: total });
    const get = await peakRssGrowth(async () => {
      const read = await chunked.get('big/object');
      const hash = createHash('sha256');
      let count = 0;
      for await (const chunk of read.stream) {
        hash.update(chunk as Buffer);
        count += (chunk as Buffer).length;
      }
      return { count, digest: hash.digest('hex') };
    });
    expect(get.result).toEqual({ count: total, digest: body.digest() });
    // A put holds one 4 MiB chunk (and the next read), a get a few socket buffers.
    expect(put.growth).toBeLessThan(total / 4);
    expect(get.growth).toBeLessThan(total / 4);
  }, 180_000);

  it('puts without a size through a resumable upload, failing it with SIZE_INVALID', async () => {
    const small = createGcsBlobStore({
      endpoint,
      bucket: (await bucketStore()).bucket,
      projectId,
      resumableThresholdBytes: 64 * 1024,
      chunkSizeBytes: 256 * 1024,
    });
    const content = randomBytes(700 * 1024);
    await expect(small.put('x', Readable.from([content]))).resolves.toEqual({
      size: content.length,
    });
    // Too long by one byte, past a chunk boundary: the last request is never sent.
    const longer = Readable.from([randomBytes(512 * 1024), randomBytes(1)]);
    expect(await codeOf(small.put('x', longer, { size: 512 * 1024 }))).toBe('SIZE_INVALID');
    const shorter = Readable.from([randomBytes(300 * 1024)]);
    expect(await codeOf(small.put('x', shorter, { size: 512 * 1024 }))).toBe('SIZE_INVALID');
    const read = await small.get('x');
    const chunks: Buffer[] = [];
    for await (const chunk of read.stream) chunks.push(chunk as Buffer);
    expect(Buffer.concat(chunks).equals(content)).toBe(true);
  });

  it('lists across pages', async () => {
    const names = Array.from({ length: 1005 }, (_, i) => `p/${String(i).padStart(4, '0')}`);
    for (let i = 0; i < names.length; i += 50) {
      await Promise.all(
        names.slice(i, i + 50).map((n) => store.put(n, Readable.from([Buffer.from(n)]))),
      );
    }
    const listed: string[] = [];
    for await (const name of store.list('p/')) listed.push(name);
    expect(listed).toEqual(names);
  });

  it('stops the download when the reader destroys the stream', async () => {
    await store.put('early', Readable.from([randomBytes(16 * 1024 * 1024)]));
    const read = await store.get('early');
    const stream = read.stream as Readable;
    await new Promise((resolve) => stream.once('readable', resolve));
    const during = sockets();
    stream.destroy();
    await new Promise((resolve) => stream.once('close', resolve));
    const deadline = Date.now() + 2000;
    while (sockets() >= during && Date.now() < deadline) {
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
    expect(sockets()).toBeLessThan(during);
  });

  it('check() passes for a bucket and names a missing one with CONFIG_INVALID', async () => {
    await expect(store.check?.()).resolves.toBeUndefined();
    const missing = createGcsBlobStore({ endpoint, bucket: 'no-such-bucket', projectId });
    const error = await missing.check?.().catch((e: unknown) => e);
    expect(error).toMatchObject({
      code: 'CONFIG_INVALID',
      message: `gcs bucket "no-such-bucket" does not exist at ${endpoint}`,
    });
  });

  it('answers STORAGE_UNAVAILABLE, naming endpoint and bucket, while the server is down', async () => {
    const { bucket } = await bucketStore();
    // One attempt: a refused connection fails at once (retries are the library's business).
    const fast = createGcsBlobStore({ endpoint, bucket, projectId, maxAttempts: 1 });
    await fast.put('kept', Readable.from([Buffer.from('kept')]));
    service('stop');
    try {
      for (const call of [
        fast.stat('kept'),
        fast.get('kept'),
        fast.put('other', Readable.from([Buffer.from('x')])),
        fast.delete('kept'),
        fast.check?.() ?? Promise.resolve(),
        (async () => {
          for await (const name of fast.list()) void name;
        })(),
      ]) {
        const message = await messageOf(call);
        expect(await codeOf(call)).toBe('STORAGE_UNAVAILABLE');
        expect(message).toContain(`gcs bucket "${bucket}" at ${endpoint}`);
      }
    } finally {
      service('start');
    }
    // The data survived (filesystem backend). A pooled connection to the old process fails
    // once with ECONNRESET: the default attempts retry it.
    const again = createGcsBlobStore({ endpoint, bucket, projectId });
    await expect(again.stat('kept')).resolves.toEqual({ size: 4 });
    await expect(again.put('other', Readable.from([Buffer.from('x')]))).resolves.toEqual({
      size: 1,
    });
    await expect(again.check?.()).resolves.toBeUndefined();
  });

  it('refuses a store without a bucket', () => {
    expect(() => createGcsBlobStore({ endpoint, bucket: '' })).toThrow(
      expect.objectContaining({ code: 'CONFIG_INVALID' }),
    );
  });
});

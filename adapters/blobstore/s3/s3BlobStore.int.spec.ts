import { execFileSync, spawnSync } from 'node:child_process';
import { createHash, randomBytes, randomFillSync } from 'node:crypto';
import { once } from 'node:events';
import { Agent } from 'node:http';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import {
  AbortMultipartUploadCommand,
  CreateBucketCommand,
  DeleteBucketCommand,
  DeleteObjectCommand,
  ListMultipartUploadsCommand,
  ListObjectsV2Command,
  PutObjectCommand,
  S3Client,
} from '@aws-sdk/client-s3';
import { Value } from '@sinclair/typebox/value';
import type { BlobStore } from '../../../domain';
import { isShoalError } from '../../../domain';
import { describeBlobStoreContract } from '../../../test/contracts/blobStoreContract';
import type { S3BackendConfig } from './s3BlobStore';
import {
  S3BackendConfigSchema,
  createS3BlobStore,
  createS3Client,
  s3MinPartSizeBytes,
} from './s3BlobStore';
import { drain } from '../../../test/fixtures/streams';

// A real S3-compatible server: versitygw run by test/services/s3.sh. CI may export
// S3_ENDPOINT; without it this spec starts the script's server itself (building versitygw
// the first time), so `npx jest adapters/blobstore/s3` works alone.
const root = join(__dirname, '../../..');
const script = join(root, 'test/services/s3.sh');
const accessKeyId = process.env.S3_ACCESS_KEY ?? 'shoal-test';
const secretAccessKey = process.env.S3_SECRET_KEY ?? 'shoal-test-secret';
const MiB = 1024 * 1024;

let endpoint = process.env.S3_ENDPOINT ?? '';
let admin: S3Client;

const runScript = (...args: string[]) =>
  execFileSync('bash', [script, ...args], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
/** The endpoint in the script's output (`start` and `status` print `S3_ENDPOINT=…`). */
const printedEndpoint = (output: string) => /^S3_ENDPOINT=(\S+)$/m.exec(output)?.[1];

beforeAll(() => {
  if (endpoint === '') {
    const line = printedEndpoint(runScript('start'));
    if (line === undefined) throw new Error('test/services/s3.sh start printed no S3_ENDPOINT');
    endpoint = line;
  }
  admin = createS3Client(config({ bucket: 'admin', maxAttempts: 5 }));
}, 600_000);

afterAll(() => admin.destroy());

/** The config of a test store: the schema's defaults, the test server, and `overrides`. */
const config = (overrides: Partial<S3BackendConfig> = {}): S3BackendConfig =>
  Value.Default(S3BackendConfigSchema, {
    endpoint,
    forcePathStyle: true,
    accessKeyId,
    secretAccessKey,
    ...overrides,
  }) as S3BackendConfig;

const freshBucket = async (): Promise<string> => {
  const bucket = `shoal-${randomBytes(6).toString('hex')}`;
  await admin.send(new CreateBucketCommand({ Bucket: bucket }));
  return bucket;
};

const dropBucket = async (bucket: string): Promise<void> => {
  const uploads = await admin.send(new ListMultipartUploadsCommand({ Bucket: bucket }));
  for (const { Key, UploadId } of uploads.Uploads ?? []) {
    await admin.send(new AbortMultipartUploadCommand({ Bucket: bucket, Key, UploadId }));
  }
  let token: string | undefined;
  do {
    const page = await admin.send(
      new ListObjectsV2Command({ Bucket: bucket, ContinuationToken: token }),
    );
    for (const { Key } of page.Contents ?? []) {
      await admin.send(new DeleteObjectCommand({ Bucket: bucket, Key }));
    }
    token = page.IsTruncated === true ? page.NextContinuationToken : undefined;
  } while (token !== undefined);
  await admin.send(new DeleteBucketCommand({ Bucket: bucket }));
};

const pendingUploads = async (bucket: string) =>
  (await admin.send(new ListMultipartUploadsCommand({ Bucket: bucket }))).Uploads ?? [];

/**
 * `total` random bytes in 64 KiB chunks, failing after `failAfter` bytes if given; `digest()`
 * once it has been read. It refills one buffer (a consumer must copy what it keeps), so what
 * a test measures is the store's memory, not garbage the source left for the GC.
 */
const generated = (total: number, failAfter?: number) => {
  const hash = createHash('sha256');
  const chunk = Buffer.alloc(64 * 1024);
  const stream = (async function* () {
    for (let sent = 0; sent < total; sent += chunk.length) {
      if (failAfter !== undefined && sent >= failAfter) throw new Error('client went away');
      const bytes = randomFillSync(chunk).subarray(0, Math.min(chunk.length, total - sent));
      hash.update(bytes);
      yield bytes;
    }
  })();
  return { stream, digest: () => hash.digest('hex') };
};

const sha256Of = async (stream: AsyncIterable<unknown>) => {
  const hash = createHash('sha256');
  let size = 0;
  for await (const chunk of stream) {
    hash.update(chunk as Uint8Array);
    size += (chunk as Uint8Array).length;
  }
  return { size, digest: hash.digest('hex') };
};

const failure = async (promise: Promise<unknown>) => {
  try {
    await promise;
  } catch (error) {
    if (isShoalError(error)) return error;
    throw error;
  }
  throw new Error('expected a failure');
};

/** A loopback port with nothing listening on it. */
const closedPort = async (): Promise<number> => {
  const server = createServer().listen(0, '127.0.0.1');
  await once(server, 'listening');
  const { port } = server.address() as { port: number };
  server.close();
  await once(server, 'close');
  return port;
};

describeBlobStoreContract(
  's3',
  async () => {
    const bucket = await freshBucket();
    // The smallest part size S3 allows, so the large-object test goes through multipart.
    const store = createS3BlobStore(config({ bucket, partSizeBytes: s3MinPartSizeBytes }));
    return { store, cleanup: () => dropBucket(bucket) };
  },
  { largeObjectBytes: 12 * MiB + 17 },
);

describe('s3 BlobStore specifics', () => {
  let bucket: string;
  beforeEach(async () => {
    bucket = await freshBucket();
  });
  afterEach(async () => {
    await dropBucket(bucket);
  });

  it('round-trips 40 MiB by multipart with memory bounded by the parts in flight', async () => {
    const partSizeBytes = 5 * MiB;
    const store = createS3BlobStore(config({ bucket, partSizeBytes, queueSize: 2 }));
    const total = 40 * MiB;
    const body = generated(total);
    const before = process.memoryUsage.rss();
    let peak = before;
    const sampler = setInterval(() => {
      peak = Math.max(peak, process.memoryUsage.rss());
    }, 5);
    try {
      await expect(store.put('big/object', body.stream, { size: total })).resolves.toEqual({
        size: total,
      });
    } finally {
      clearInterval(sampler);
    }
    // queueSize (2) parts uploading and one filling, plus slack for the runtime.
    expect(peak - before).toBeLessThan(3 * partSizeBytes + 10 * MiB);
    await expect(pendingUploads(bucket)).resolves.toEqual([]);
    const read = await store.get('big/object');
    expect(read).toMatchObject({ size: total, start: 0, end: total - 1 });
    await expect(sha256Of(read.stream)).resolves.toEqual({ size: total, digest: body.digest() });
  });

  it('aborts the multipart upload of a body that fails after its first parts', async () => {
    const store = createS3BlobStore(config({ bucket, partSizeBytes: s3MinPartSizeBytes }));
    await store.put('kept', Readable.from([Buffer.from('old')]));
    const body = generated(20 * MiB, 12 * MiB);
    await expect(store.put('kept', body.stream)).rejects.toThrow('client went away');
    await expect(pendingUploads(bucket)).resolves.toEqual([]);
    expect((await drain((await store.get('kept')).stream)).toString()).toBe('old');
  });

  it('refuses a multipart body of the wrong size, keeping the previous object', async () => {
    const store = createS3BlobStore(config({ bucket, partSizeBytes: s3MinPartSizeBytes }));
    await store.put('sized', Readable.from([Buffer.from('old')]));
    const short = await failure(store.put('sized', generated(11 * MiB).stream, { size: 12 * MiB }));
    expect(short.code).toBe('SIZE_INVALID');
    const long = await failure(store.put('sized', generated(13 * MiB).stream, { size: 12 * MiB }));
    expect(long.code).toBe('SIZE_INVALID');
    await expect(pendingUploads(bucket)).resolves.toEqual([]);
    await expect(store.stat('sized')).resolves.toEqual({ size: 3 });
  });

  it('works with either checksum setting (versitygw takes the SDK default CRC32)', async () => {
    for (const checksums of ['when_required', 'when_supported'] as const) {
      const store = createS3BlobStore(
        config({ bucket, checksums, partSizeBytes: s3MinPartSizeBytes }),
      );
      for (const size of [1000, 6 * MiB]) {
        const body = generated(size);
        await store.put(`${checksums}/${size}`, body.stream, { size });
        const read = await store.get(`${checksums}/${size}`, { start: 0 });
        await expect(sha256Of(read.stream)).resolves.toEqual({ size, digest: body.digest() });
      }
    }
    expect(config().checksums).toBe('when_required');
  });

  it('lists across pages, in order, skipping keys outside the name grammar', async () => {
    const store = createS3BlobStore(config({ bucket }), { listPageSize: 7 });
    const names = Array.from({ length: 40 }, (_, i) => `many/${(i * 7919).toString(36)}`);
    await Promise.all(names.map((n) => store.put(n, Readable.from([Buffer.from(n)]))));
    // Written into the bucket by someone else: not a name the port can return.
    await admin.send(new PutObjectCommand({ Bucket: bucket, Key: 'many/.hidden', Body: 'x' }));
    const listed: string[] = [];
    for await (const name of store.list('many/')) listed.push(name);
    expect(listed).toEqual([...names].sort((x, y) => (x < y ? -1 : x > y ? 1 : 0)));
  });

  it('closes the HTTP connection when the reader destroys the stream', async () => {
    const agent = new Agent({ keepAlive: true });
    const client = new S3Client({
      region: 'us-east-1',
      endpoint,
      forcePathStyle: true,
      credentials: { accessKeyId, secretAccessKey },
      requestHandler: { httpAgent: agent },
    });
    const store = createS3BlobStore(config({ bucket }), { client });
    try {
      await store.put('early', generated(8 * MiB).stream);
      const read = await store.get('early');
      const [socket] = Object.values(agent.sockets).flat();
      expect(socket).toBeDefined();
      const closed = once(socket!, 'close');
      const stream = read.stream as Readable;
      await once(stream, 'readable');
      stream.destroy();
      await closed;
      expect(Object.values(agent.sockets).flat()).toEqual([]);
      await expect(store.stat('early')).resolves.toEqual({ size: 8 * MiB });
    } finally {
      client.destroy();
    }
  });

  it('check() passes for a usable bucket', async () => {
    await expect(createS3BlobStore(config({ bucket })).check?.()).resolves.toBeUndefined();
  });

  it('check() names a missing bucket, wrong credentials and an unreachable server', async () => {
    const missing = await failure(createS3BlobStore(config({ bucket: 'no-such' })).check!());
    expect(missing).toMatchObject({ code: 'CONFIG_INVALID', retriable: false });
    expect(missing.message).toBe(`s3 bucket "no-such" does not exist at ${endpoint}`);

    const secret = await failure(
      createS3BlobStore(config({ bucket, secretAccessKey: 'not-the-secret' })).check!(),
    );
    expect(secret).toMatchObject({ code: 'CONFIG_INVALID' });
    expect(secret.message).toBe(
      `s3 credentials refused: the secret access key of access key "${accessKeyId}" is wrong ` +
        '(SignatureDoesNotMatch)',
    );

    const key = await failure(
      createS3BlobStore(config({ bucket, accessKeyId: 'nobody' })).check!(),
    );
    expect(key).toMatchObject({ code: 'CONFIG_INVALID' });
    expect(key.message).toMatch(/^s3 credentials refused: access key "nobody" is not known at /);

    const down = `http://127.0.0.1:${await closedPort()}`;
    const unreachable = await failure(
      createS3BlobStore(config({ bucket, endpoint: down, maxAttempts: 1 })).check!(),
    );
    expect(unreachable).toMatchObject({ code: 'STORAGE_UNAVAILABLE', retriable: true });
    expect(unreachable.message).toBe(
      `s3 store: check: ${down} bucket "${bucket}" is unreachable (ECONNREFUSED)`,
    );
  });

  it('refuses a config without a bucket or with parts below 5 MiB', () => {
    expect(() => createS3BlobStore(config({ bucket: '' }))).toThrow(
      expect.objectContaining({ code: 'CONFIG_INVALID', message: 's3 backend: bucket is not set' }),
    );
    expect(() => createS3BlobStore(config({ bucket, partSizeBytes: MiB }))).toThrow(
      expect.objectContaining({ code: 'CONFIG_INVALID' }),
    );
  });

  it('documents every config field and gives it a default', () => {
    for (const [field, schema] of Object.entries(S3BackendConfigSchema.properties)) {
      expect([field, typeof schema.description]).toEqual([field, 'string']);
      expect([field, schema.default]).not.toEqual([field, undefined]);
    }
  });
});

// Stopping the server disturbs every client of it, so this runs only against the server
// test/services/s3.sh manages, where the restart is ours to make.
const ownServer = () => {
  const status = spawnSync('bash', [script, 'status'], {
    encoding: 'utf8',
    stdio: ['ignore', 'pipe', 'ignore'],
  });
  return status.status === 0 && printedEndpoint(status.stdout) === endpoint;
};

describe('s3 BlobStore across a server restart', () => {
  it('fails with STORAGE_UNAVAILABLE while the server is down, and works after', async () => {
    if (!ownServer()) {
      console.warn(`NOT RUN: ${endpoint} is not the server test/services/s3.sh runs`);
      return;
    }
    const bucket = await freshBucket();
    const store: BlobStore = createS3BlobStore(config({ bucket, maxAttempts: 1 }));
    await store.put('before', Readable.from([Buffer.from('kept')]));
    runScript('stop');
    try {
      for (const attempt of [
        store.put('during', Readable.from([Buffer.from('x')])),
        store.get('before'),
        store.stat('before'),
      ]) {
        const error = await failure(attempt);
        expect(error).toMatchObject({ code: 'STORAGE_UNAVAILABLE', retriable: true });
        expect(error.message).toContain(`${endpoint} bucket "${bucket}" is unreachable`);
      }
      await expect(store.check!()).rejects.toMatchObject({ code: 'STORAGE_UNAVAILABLE' });
    } finally {
      runScript('restart');
    }
    expect((await drain((await store.get('before')).stream)).toString()).toBe('kept');
    await expect(store.put('after', Readable.from([Buffer.from('y')]))).resolves.toEqual({
      size: 1,
    });
    await store.check!();
    await dropBucket(bucket);
  });
});

import { readdirSync } from 'node:fs';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import type { BlobStore, ByteRange, Digest } from '../../domain';
import { blobObjectName } from '../../domain';
import type { OriginClient } from './client/originClient';
import { createOriginClient } from './client/originClient';
import type { RunningOrigin } from './main';
import type { OriginHarness } from '../../test/doubles/originHarness';
import { blobFixture } from '../../test/fixtures/blobs';
import { createOriginHarness } from '../../test/doubles/originHarness';
import { drain } from '../../test/fixtures/streams';

const MiB = 1024 * 1024;

/** A one-shot latch: `wait()` resolves once `open()` was called. */
const latch = () => {
  let open: () => void = () => undefined;
  const opened = new Promise<void>((resolve) => (open = resolve));
  return { open: () => open(), wait: () => opened };
};

/** Reads at least `n` bytes from a stream, leaving it open for more. */
const readBytes = async (stream: Readable, n: number): Promise<Buffer> => {
  const chunks: Buffer[] = [];
  let have = 0;
  for await (const chunk of stream.iterator({ destroyOnReturn: false })) {
    chunks.push(chunk as Buffer);
    have += (chunk as Buffer).length;
    if (have >= n) break;
  }
  return Buffer.concat(chunks);
};

/**
 * A backend serving scripted bytes for one object: `reads` says, per `get` in order, what
 * the stream does (the real backend answers the rest).
 */
const scriptedBackend = (
  inner: BlobStore,
  name: string,
  reads: Array<(range: ByteRange | undefined) => Promise<{ stream: Readable; size: number }>>,
): BlobStore & { gets: Array<ByteRange | undefined> } => {
  const gets: Array<ByteRange | undefined> = [];
  return {
    name: inner.name,
    gets,
    stat: (n) => inner.stat(n),
    put: (n, body, options) => inner.put(n, body, options),
    delete: (n) => inner.delete(n),
    list: (prefix) => inner.list(prefix),
    get: async (n, range) => {
      if (n !== name) return inner.get(n, range);
      gets.push(range);
      const script = reads[gets.length - 1];
      if (script === undefined) return inner.get(n, range);
      const { stream, size } = await script(range);
      const start = range?.start ?? 0;
      return { stream, size, start, end: size - 1 };
    },
  };
};

describe('an owner filling a blob it lacks streams it while it stores it', () => {
  let harness: OriginHarness;
  let origin: RunningOrigin;
  let client: OriginClient;

  beforeEach(() => {
    harness = createOriginHarness();
  });
  afterEach(async () => {
    await client?.close();
    await harness.cleanup();
  });

  const startWith = async (backend: BlobStore) => {
    origin = await harness.start({ id: 'solo', replicas: 1 }, { backend });
    client = createOriginClient(origin.url);
  };

  const tempFiles = () => readdirSync(join(origin.directory, 'tmp'));

  it('sends the first bytes before the source has sent them all, then the rest', async () => {
    const blob = blobFixture(4 * MiB);
    const name = blobObjectName(blob.digest);
    const gate = latch();
    const backend = scriptedBackend(harness.backend, name, [
      async () => ({
        size: blob.size,
        stream: Readable.from(
          (async function* () {
            yield blob.content.subarray(0, MiB);
            await gate.wait(); // the rest only once the reader saw the first part
            yield blob.content.subarray(MiB);
          })(),
        ),
      }),
    ]);
    await startWith(backend);

    const read = await client.getBlob(blob.digest);
    expect(read).toMatchObject({ size: blob.size, start: 0, end: blob.size - 1 });
    const first = await readBytes(read.stream, MiB - 1);
    expect(first.equals(blob.content.subarray(0, first.length))).toBe(true);
    // The fill is not over: nothing is stored under the digest yet.
    await expect(client.statBlob(blob.digest, { local: true })).resolves.toBeUndefined();

    gate.open();
    const rest = await drain(read.stream);
    expect(Buffer.concat([first, rest]).equals(blob.content)).toBe(true);
    // Stored, placed and counted once the reader has the last byte.
    await expect(client.statBlob(blob.digest, { local: true })).resolves.toEqual({
      size: blob.size,
    });
    await harness.waitForEvent(
      (e) => e.type === 'BlobPlaced' && e.data.digest === blob.digest && e.data.origin === 'solo',
    );
    const metrics = await (await fetch(`${origin.url}/metrics`)).text();
    expect(metrics).toMatch(/shoal_origin_fills_total\{[^}]*source="backend"[^}]*\} 1/);
    expect(tempFiles()).toEqual([]);
  });

  it('lets a second reader join a fill, ranges included', async () => {
    const blob = blobFixture(3 * MiB + 123);
    const name = blobObjectName(blob.digest);
    const gate = latch();
    const backend = scriptedBackend(harness.backend, name, [
      async () => ({
        size: blob.size,
        stream: Readable.from(
          (async function* () {
            yield blob.content.subarray(0, 2 * MiB);
            await gate.wait();
            yield blob.content.subarray(2 * MiB);
          })(),
        ),
      }),
    ]);
    await startWith(backend);

    const whole = await client.getBlob(blob.digest);
    await readBytes(whole.stream, MiB);
    const part = await client.getBlob(blob.digest, { range: { start: 10, end: MiB } });
    expect(part).toMatchObject({ size: blob.size, start: 10, end: MiB });
    gate.open();
    const [rest, range] = await Promise.all([drain(whole.stream), drain(part.stream)]);
    expect(range.equals(blob.content.subarray(10, MiB + 1))).toBe(true);
    expect(rest.length).toBeGreaterThan(0);
    expect(backend.gets).toHaveLength(1); // one fill served both
  });

  it('aborts the reader and stores nothing when the bytes do not match the digest', async () => {
    const blob = blobFixture(2 * MiB);
    const wrong = Buffer.from(blob.content);
    wrong.writeUInt8(wrong.readUInt8(wrong.length - 1) ^ 0xff, wrong.length - 1);
    const name = blobObjectName(blob.digest);
    const gate = latch();
    // Every byte arrives, but the source ends (and the check runs) only when the test says.
    const backend = scriptedBackend(harness.backend, name, [
      async () => ({
        size: blob.size,
        stream: Readable.from(
          (async function* () {
            yield wrong;
            await gate.wait();
          })(),
        ),
      }),
    ]);
    await startWith(backend);

    const read = await client.getBlob(blob.digest);
    expect(read.size).toBe(blob.size);
    // All but the last byte flow before the check; the last one waits for it.
    const early = await readBytes(read.stream, blob.size - 1);
    expect(early.length).toBe(blob.size - 1);
    gate.open();
    const outcome = await drain(read.stream).then(
      (rest) => `complete with ${rest.length} more bytes`,
      (error: unknown) => error,
    );
    // Cut short: never the whole (wrong) blob as if it were complete.
    expect(outcome).toMatchObject({ message: expect.stringMatching(/aborted|reset|closed/i) });
    await expect(client.statBlob(blob.digest, { local: true })).resolves.toBeUndefined();
    expect(tempFiles()).toEqual([]);
    const metrics = await (await fetch(`${origin.url}/metrics`)).text();
    expect(metrics).toMatch(/shoal_origin_fills_total\{[^}]*source="corrupt"[^}]*\} 1/);
  });

  it('resumes from where a source failed, the reader none the wiser', async () => {
    const blob = blobFixture(3 * MiB);
    const name = blobObjectName(blob.digest);
    await harness.backend.put(name, Readable.from([blob.content]));
    const backend = scriptedBackend(harness.backend, name, [
      async () => ({
        size: blob.size,
        stream: Readable.from(
          (async function* () {
            yield blob.content.subarray(0, MiB + 5);
            throw new Error('connection reset');
          })(),
        ),
      }),
    ]);
    await startWith(backend);

    const read = await client.getBlob(blob.digest);
    expect((await drain(read.stream)).equals(blob.content)).toBe(true);
    // The second get picked up at the first byte the failed source had not delivered.
    expect(backend.gets).toEqual([undefined, { start: MiB + 5 }]);
    await expect(client.statBlob(blob.digest, { local: true })).resolves.toEqual({
      size: blob.size,
    });
  });

  it('answers BLOB_UNKNOWN when no source has the blob', async () => {
    await startWith(harness.backend);
    await expect(client.getBlob(blobFixture(10).digest as Digest)).rejects.toMatchObject({
      code: 'BLOB_UNKNOWN',
    });
  });
});

import { createHash, randomBytes } from 'node:crypto';
import { Readable } from 'node:stream';
import type { BlobStore, Digest } from '../../domain';
import { blobObjectName, isShoalError } from '../../domain';

export type BlobStoreContractOptions = {
  /** Size of the object used by the streaming test (default 3 MiB). */
  readonly largeObjectBytes?: number;
  /** Per-test timeout for adapters that talk to a remote service (default jest's). */
  readonly timeoutMs?: number;
};

export type BlobStoreFactory = () => Promise<{
  readonly store: BlobStore;
  readonly cleanup?: () => Promise<void>;
}>;

const drain = async (stream: AsyncIterable<unknown>): Promise<Buffer> => {
  const chunks: Buffer[] = [];
  for await (const chunk of stream) chunks.push(Buffer.from(chunk as Uint8Array));
  return Buffer.concat(chunks);
};

const collect = async (names: AsyncIterable<string>): Promise<string[]> => {
  const out: string[] = [];
  for await (const name of names) out.push(name);
  return out;
};

const codeOf = async (promise: Promise<unknown>): Promise<string | undefined> => {
  try {
    await promise;
    return undefined;
  } catch (error) {
    return isShoalError(error) ? error.code : `not a ShoalError: ${String(error)}`;
  }
};

/** A stream of `chunks` buffers of `size` bytes that fails instead of ending. */
const failingBody = (chunks: number, size: number): Readable =>
  Readable.from(
    (async function* () {
      for (let i = 0; i < chunks; i++) yield randomBytes(size);
      throw new Error('client went away');
    })(),
  );

/** A stream that yields `total` bytes in chunks without holding them all. */
const generated = (total: number, chunk = 64 * 1024) => {
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

const freshPrefix = () => `contract-${randomBytes(6).toString('hex')}/`;

/**
 * The BlobStore port's contract (domain/blob/blobStore.ts), as one suite every adapter runs:
 * `describeBlobStoreContract('filesystem', factory)`. Each test works under fresh names.
 */
export const describeBlobStoreContract = (
  name: string,
  factory: BlobStoreFactory,
  options: BlobStoreContractOptions = {},
): void => {
  describe(`BlobStore contract: ${name}`, () => {
    let store: BlobStore;
    let cleanup: (() => Promise<void>) | undefined;
    if (options.timeoutMs !== undefined) jest.setTimeout(options.timeoutMs);

    beforeEach(async () => {
      ({ store, cleanup } = await factory());
    });
    afterEach(async () => {
      await cleanup?.();
    });

    it('stores an object and reads it back whole, with its size', async () => {
      const key = `${freshPrefix()}a/b`;
      const content = randomBytes(10_000);
      await expect(store.put(key, Readable.from([content]))).resolves.toEqual({ size: 10_000 });
      await expect(store.stat(key)).resolves.toEqual({ size: 10_000 });
      const read = await store.get(key);
      expect(read).toMatchObject({ size: 10_000, start: 0, end: 9_999 });
      expect((await drain(read.stream)).equals(content)).toBe(true);
    });

    it('stores and reads an empty object', async () => {
      const key = `${freshPrefix()}empty`;
      await store.put(key, Readable.from([]), { size: 0 });
      await expect(store.stat(key)).resolves.toEqual({ size: 0 });
      const read = await store.get(key);
      expect(read.size).toBe(0);
      expect((await drain(read.stream)).length).toBe(0);
    });

    it('answers undefined from stat and BLOB_UNKNOWN from get for a missing object', async () => {
      const key = `${freshPrefix()}missing`;
      await expect(store.stat(key)).resolves.toBeUndefined();
      expect(await codeOf(store.get(key))).toBe('BLOB_UNKNOWN');
    });

    it('reads byte ranges, inclusive, clamping the end to the size', async () => {
      const key = `${freshPrefix()}ranged`;
      const content = randomBytes(1000);
      await store.put(key, Readable.from([content]));
      const middle = await store.get(key, { start: 100, end: 199 });
      expect(middle).toMatchObject({ size: 1000, start: 100, end: 199 });
      expect((await drain(middle.stream)).equals(content.subarray(100, 200))).toBe(true);
      const tail = await store.get(key, { start: 990 });
      expect((await drain(tail.stream)).equals(content.subarray(990))).toBe(true);
      const clamped = await store.get(key, { start: 995, end: 5000 });
      expect(clamped.end).toBe(999);
      expect((await drain(clamped.stream)).equals(content.subarray(995))).toBe(true);
      const last = await store.get(key, { start: 999, end: 999 });
      expect((await drain(last.stream)).equals(content.subarray(999))).toBe(true);
    });

    it('refuses unsatisfiable ranges with RANGE_INVALID', async () => {
      const key = `${freshPrefix()}ranged`;
      await store.put(key, Readable.from([randomBytes(100)]));
      expect(await codeOf(store.get(key, { start: 100 }))).toBe('RANGE_INVALID');
      expect(await codeOf(store.get(key, { start: 50, end: 10 }))).toBe('RANGE_INVALID');
      expect(await codeOf(store.get(key, { start: -1 }))).toBe('RANGE_INVALID');
      const empty = `${freshPrefix()}empty`;
      await store.put(empty, Readable.from([]));
      expect(await codeOf(store.get(empty, { start: 0 }))).toBe('RANGE_INVALID');
    });

    it('makes nothing visible when the body stream fails', async () => {
      const prefix = freshPrefix();
      const key = `${prefix}broken`;
      await expect(store.put(key, failingBody(4, 4096))).rejects.toThrow('client went away');
      await expect(store.stat(key)).resolves.toBeUndefined();
      await expect(collect(store.list(prefix))).resolves.toEqual([]);
    });

    it('keeps the previous object when a replacing put fails', async () => {
      const key = `${freshPrefix()}kept`;
      const first = randomBytes(500);
      await store.put(key, Readable.from([first]));
      await expect(store.put(key, failingBody(2, 1000))).rejects.toThrow();
      expect((await drain((await store.get(key)).stream)).equals(first)).toBe(true);
    });

    it('refuses a body not of the announced size (SIZE_INVALID), storing nothing', async () => {
      const key = `${freshPrefix()}sized`;
      expect(await codeOf(store.put(key, Readable.from([randomBytes(10)]), { size: 11 }))).toBe(
        'SIZE_INVALID',
      );
      expect(await codeOf(store.put(key, Readable.from([randomBytes(12)]), { size: 11 }))).toBe(
        'SIZE_INVALID',
      );
      await expect(store.stat(key)).resolves.toBeUndefined();
      await expect(store.put(key, Readable.from([randomBytes(11)]), { size: 11 })).resolves.toEqual(
        { size: 11 },
      );
    });

    it('replaces an object atomically; concurrent puts leave one whole object', async () => {
      const key = `${freshPrefix()}raced`;
      const versions = [randomBytes(200_000), randomBytes(200_000), randomBytes(200_000)];
      await Promise.all(
        versions.map((v) => store.put(key, Readable.from([v.subarray(0, 1000), v.subarray(1000)]))),
      );
      const stored = await drain((await store.get(key)).stream);
      expect(versions.some((v) => v.equals(stored))).toBe(true);
    });

    it('deletes idempotently', async () => {
      const key = `${freshPrefix()}gone`;
      await store.put(key, Readable.from([Buffer.from('x')]));
      await expect(store.delete(key)).resolves.toBe(true);
      await expect(store.delete(key)).resolves.toBe(false);
      await expect(store.stat(key)).resolves.toBeUndefined();
      expect(await codeOf(store.get(key))).toBe('BLOB_UNKNOWN');
    });

    it('lists names under a string prefix, each once, in code-point order', async () => {
      const prefix = freshPrefix();
      const names = ['b/x', 'a.b', 'a/c', 'a/b/d', 'a-b', 'c', 'a/b/c', 'ab'].map(
        (n) => `${prefix}${n}`,
      );
      for (const key of names) await store.put(key, Readable.from([Buffer.from(key)]));
      const sorted = [...names].sort((x, y) => (x < y ? -1 : x > y ? 1 : 0));
      await expect(collect(store.list(prefix))).resolves.toEqual(sorted);
      await expect(collect(store.list(`${prefix}a/`))).resolves.toEqual(
        sorted.filter((n) => n.startsWith(`${prefix}a/`)),
      );
      // A prefix that ends inside a segment matches by string.
      await expect(collect(store.list(`${prefix}a`))).resolves.toEqual(
        sorted.filter((n) => n.startsWith(`${prefix}a`)),
      );
      await expect(collect(store.list(`${prefix}zz`))).resolves.toEqual([]);
    });

    it('lists blob object names that map back to digests', async () => {
      const prefix = freshPrefix();
      const digest = `sha256:${createHash('sha256').update(prefix).digest('hex')}` as Digest;
      const key = blobObjectName(digest, prefix);
      await store.put(key, Readable.from([Buffer.from(prefix)]));
      await expect(collect(store.list(prefix))).resolves.toEqual([key]);
    });

    it('refuses invalid names with PARAMETER_INVALID', async () => {
      for (const bad of ['', '../escape', 'a//b', '/abs', 'a/./b', '.hidden', 'a/..', 'a b']) {
        expect(await codeOf(store.stat(bad))).toBe('PARAMETER_INVALID');
        expect(await codeOf(store.put(bad, Readable.from([Buffer.from('x')])))).toBe(
          'PARAMETER_INVALID',
        );
      }
    });

    it('streams a large object through put and get', async () => {
      const total = options.largeObjectBytes ?? 3 * 1024 * 1024 + 17;
      const key = `${freshPrefix()}large`;
      const body = generated(total);
      await expect(store.put(key, body.stream, { size: total })).resolves.toEqual({ size: total });
      const read = await store.get(key);
      const hash = createHash('sha256');
      let count = 0;
      for await (const chunk of read.stream) {
        hash.update(chunk as Uint8Array);
        count += (chunk as Uint8Array).length;
      }
      expect(count).toBe(total);
      expect(hash.digest('hex')).toBe(body.digest());
    });

    it('stops reading when the consumer destroys the stream', async () => {
      const key = `${freshPrefix()}early`;
      await store.put(key, Readable.from([randomBytes(1024 * 1024)]));
      const read = await store.get(key);
      const stream = read.stream as Readable;
      await new Promise<void>((resolve, reject) => {
        stream.once('data', () => {
          stream.destroy();
          resolve();
        });
        stream.once('error', reject);
      });
      // The object is still readable afterwards.
      await expect(store.stat(key)).resolves.toEqual({ size: 1024 * 1024 });
    });
  });
};

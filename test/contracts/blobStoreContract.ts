import { createHash, randomBytes } from 'node:crypto';
import { Readable } from 'node:stream';
import type { BlobStore, Digest } from '../../domain';
import { blobObjectName } from '../../domain';
import { drain } from '../fixtures/streams';
import { codeOf } from '../fixtures/errors';
import { sha256 } from '../fixtures/blobs';

/** What an adapter can do, where adapters differ; absent fields: what the port asks. */
export type BlobStoreCapabilities = {
  /**
   * `false`: the backend cannot list its objects (another registry); the listing tests are
   * replaced by one that `list` fails with `UNSUPPORTED`. Default: it lists.
   */
  readonly list?: boolean;
  /**
   * Set for a read-only backend (`readOnly: true`, another registry): the write tests are
   * replaced by one that `put` and `delete` fail with `UNSUPPORTED` and change nothing, and
   * every read test runs on objects put in place by `seed` through the backend's own API.
   */
  readonly readOnly?: {
    /**
     * Stores `bytes` in the backend behind the store's back; resolves with the object name it
     * is readable under (`name` when the backend lets the test choose, else its own, e.g. the
     * blob object name of the bytes' digest).
     */
    seed(name: string, bytes: Buffer): Promise<string>;
  };
};

export type BlobStoreContractOptions = {
  /** Size of the object used by the streaming test (default 3 MiB). */
  readonly largeObjectBytes?: number;
  /** Per-test timeout for adapters that talk to a remote service (default jest's). */
  readonly timeoutMs?: number;
  readonly capabilities?: BlobStoreCapabilities;
};

export type BlobStoreFactory = () => Promise<{
  readonly store: BlobStore;
  readonly cleanup?: () => Promise<void>;
}>;

const collect = async (names: AsyncIterable<string>): Promise<string[]> => {
  const out: string[] = [];
  for await (const name of names) out.push(name);
  return out;
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

/** The object name of a blob no backend holds. */
const absentBlobName = () => blobObjectName(`sha256:${randomBytes(32).toString('hex')}` as Digest);

/**
 * The BlobStore port's contract (domain/blob/blobStore.ts), as one suite every adapter runs:
 * `describeBlobStoreContract('filesystem', factory)`. Each test works under fresh names.
 */
export const describeBlobStoreContract = (
  name: string,
  factory: BlobStoreFactory,
  options: BlobStoreContractOptions = {},
): void => {
  const profile = options.capabilities?.readOnly ? ' (read-only)' : '';
  describe(`BlobStore contract: ${name}${profile}`, () => {
    let store: BlobStore;
    let cleanup: (() => Promise<void>) | undefined;
    if (options.timeoutMs !== undefined) jest.setTimeout(options.timeoutMs);

    beforeEach(async () => {
      ({ store, cleanup } = await factory());
    });
    afterEach(async () => {
      await cleanup?.();
    });

    const readOnly = options.capabilities?.readOnly;
    const lists = options.capabilities?.list !== false;

    /** Puts `bytes` in place: through `put`, or seeded behind a read-only store's back. */
    const place = async (key: string, bytes: Buffer): Promise<string> => {
      if (readOnly !== undefined) return readOnly.seed(key, bytes);
      await expect(store.put(key, Readable.from([bytes]))).resolves.toEqual({ size: bytes.length });
      return key;
    };

    it(`${readOnly ? 'reads a seeded object' : 'stores an object and reads it'} back whole, with its size`, async () => {
      const content = randomBytes(10_000);
      const key = await place(`${freshPrefix()}a/b`, content);
      await expect(store.stat(key)).resolves.toEqual({ size: 10_000 });
      const read = await store.get(key);
      expect(read).toMatchObject({ size: 10_000, start: 0, end: 9_999 });
      expect((await drain(read.stream)).equals(content)).toBe(true);
    });

    it(`${readOnly ? 'reads a seeded' : 'stores and reads an'} empty object`, async () => {
      let key = `${freshPrefix()}empty`;
      if (readOnly === undefined) await store.put(key, Readable.from([]), { size: 0 });
      else key = await readOnly.seed(key, Buffer.alloc(0));
      await expect(store.stat(key)).resolves.toEqual({ size: 0 });
      const read = await store.get(key);
      expect(read.size).toBe(0);
      expect((await drain(read.stream)).length).toBe(0);
    });

    it('answers undefined from stat and BLOB_UNKNOWN from get for a missing object', async () => {
      for (const key of [`${freshPrefix()}missing`, absentBlobName()]) {
        await expect(store.stat(key)).resolves.toBeUndefined();
        expect(await codeOf(store.get(key))).toBe('BLOB_UNKNOWN');
      }
    });

    it('reads byte ranges, inclusive, clamping the end to the size', async () => {
      const content = randomBytes(1000);
      const key = await place(`${freshPrefix()}ranged`, content);
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
      const key = await place(`${freshPrefix()}ranged`, randomBytes(100));
      expect(await codeOf(store.get(key, { start: 100 }))).toBe('RANGE_INVALID');
      expect(await codeOf(store.get(key, { start: 50, end: 10 }))).toBe('RANGE_INVALID');
      expect(await codeOf(store.get(key, { start: -1 }))).toBe('RANGE_INVALID');
      const empty = await place(`${freshPrefix()}empty`, Buffer.alloc(0));
      expect(await codeOf(store.get(empty, { start: 0 }))).toBe('RANGE_INVALID');
    });

    if (readOnly === undefined) {
      it('makes nothing visible when the body stream fails', async () => {
        const prefix = freshPrefix();
        const key = `${prefix}broken`;
        await expect(store.put(key, failingBody(4, 4096))).rejects.toThrow('client went away');
        await expect(store.stat(key)).resolves.toBeUndefined();
        if (lists) await expect(collect(store.list(prefix))).resolves.toEqual([]);
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
        await expect(
          store.put(key, Readable.from([randomBytes(11)]), { size: 11 }),
        ).resolves.toEqual({ size: 11 });
      });

      it('replaces an object atomically; concurrent puts leave one whole object', async () => {
        const key = `${freshPrefix()}raced`;
        const versions = [randomBytes(200_000), randomBytes(200_000), randomBytes(200_000)];
        await Promise.all(
          versions.map((v) =>
            store.put(key, Readable.from([v.subarray(0, 1000), v.subarray(1000)])),
          ),
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

      it('refuses invalid names with PARAMETER_INVALID', async () => {
        for (const bad of ['', '../escape', 'a//b', '/abs', 'a/./b', '.hidden', 'a/..', 'a b']) {
          expect(await codeOf(store.stat(bad))).toBe('PARAMETER_INVALID');
          expect(await codeOf(store.put(bad, Readable.from([Buffer.from('x')])))).toBe(
            'PARAMETER_INVALID',
          );
        }
      });
    } else {
      it('is read-only: put and delete fail with UNSUPPORTED and change nothing', async () => {
        expect(store.readOnly).toBe(true);
        const content = randomBytes(300);
        const key = await readOnly.seed(`${freshPrefix()}kept`, content);
        const fresh = `${freshPrefix()}new`;
        expect(await codeOf(store.put(fresh, Readable.from([Buffer.from('x')])))).toBe(
          'UNSUPPORTED',
        );
        expect(await codeOf(store.put(key, Readable.from([randomBytes(300)])))).toBe('UNSUPPORTED');
        expect(await codeOf(store.delete(key))).toBe('UNSUPPORTED');
        expect(await codeOf(store.delete(fresh))).toBe('UNSUPPORTED');
        await expect(store.stat(fresh)).resolves.toBeUndefined();
        expect((await drain((await store.get(key)).stream)).equals(content)).toBe(true);
      });

      it('refuses invalid names with PARAMETER_INVALID', async () => {
        for (const bad of ['', '../escape', 'a//b', '/abs', 'a/./b', '.hidden', 'a/..', 'a b']) {
          expect(await codeOf(store.stat(bad))).toBe('PARAMETER_INVALID');
          expect(await codeOf(store.get(bad))).toBe('PARAMETER_INVALID');
          expect(await codeOf(store.put(bad, Readable.from([Buffer.from('x')])))).toBe(
            'PARAMETER_INVALID',
          );
          expect(await codeOf(store.delete(bad))).toBe('PARAMETER_INVALID');
        }
      });
    }

    if (!lists) {
      it('refuses to list with UNSUPPORTED', async () => {
        expect(await codeOf(collect(store.list()))).toBe('UNSUPPORTED');
        expect(await codeOf(collect(store.list(freshPrefix())))).toBe('UNSUPPORTED');
      });
    } else if (readOnly === undefined) {
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
        const digest = sha256(prefix);
        const key = blobObjectName(digest, prefix);
        await store.put(key, Readable.from([Buffer.from(prefix)]));
        await expect(collect(store.list(prefix))).resolves.toEqual([key]);
      });
    } else {
      it('lists seeded objects by their names', async () => {
        const keys = [
          await readOnly.seed(`${freshPrefix()}a`, randomBytes(10)),
          await readOnly.seed(`${freshPrefix()}b`, randomBytes(10)),
        ];
        for (const key of keys) await expect(collect(store.list(key))).resolves.toEqual([key]);
      });
    }

    it(`streams a large object through ${readOnly ? 'get' : 'put and get'}`, async () => {
      const total = options.largeObjectBytes ?? 3 * 1024 * 1024 + 17;
      let key = `${freshPrefix()}large`;
      const body = generated(total);
      if (readOnly === undefined) {
        await expect(store.put(key, body.stream, { size: total })).resolves.toEqual({
          size: total,
        });
      } else {
        key = await readOnly.seed(key, await drain(body.stream));
      }
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
      const key = await place(`${freshPrefix()}early`, randomBytes(1024 * 1024));
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

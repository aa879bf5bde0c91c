import { randomBytes } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { open, readdir, rename, stat, unlink } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { Readable } from 'node:stream';
import type { ByteRange, ByteSource, Digest } from '../../../domain';
import { ShoalError, digestAlgorithm, digestHex, orThrow, resolveRange } from '../../../domain';
import { ensureDir, isMissing, syncDir } from '../../../kit/fs';
import type { BuiltBlob } from '../../../p2p/metainfo';
import { MetainfoBuilder, pieceLengthFor } from '../../../p2p/metainfo';
import { appendStream, readChunkBytes } from './files';
import type { GrowingBlob } from './growingBlob';
import { createGrowingBlob } from './growingBlob';
import { sessionBuilder } from './sessionBuilder';

export type BlobRead = {
  readonly stream: Readable;
  /** Size of the whole blob. */
  readonly size: number;
  readonly start: number;
  readonly end: number;
};

/**
 * The origin's content-addressed blob store on local disk:
 * `<root>/blobs/sha256/ab/<hex>`, with partial writes in `<root>/tmp/`. A blob appears under
 * its digest only after its bytes were hashed and matched, fsynced, and renamed into place
 * (and the directory fsynced): never half-written, never with the wrong content.
 */
export const createContentStore = (
  root: string,
  /** Told when a blob lands under its digest, is read, or is removed (the evictor's index). */
  observer: ContentObserver = {},
) => {
  const blobsDir = join(root, 'blobs');
  const tempDir = join(root, 'tmp');
  /** Open read streams per digest: a blob being served is never evicted. */
  const readers = new Map<string, number>();
  const reading = (digest: Digest, stream: Readable) => {
    readers.set(digest, (readers.get(digest) ?? 0) + 1);
    stream.once('close', () => {
      const left = (readers.get(digest) ?? 1) - 1;
      if (left > 0) readers.set(digest, left);
      else readers.delete(digest);
    });
    observer.read?.(digest);
  };

  const pathOf = (digest: Digest): string => {
    const hex = digestHex(digest);
    return join(blobsDir, digestAlgorithm(digest), hex.slice(0, 2), hex);
  };

  const stat_ = async (digest: Digest): Promise<{ size: number } | undefined> => {
    try {
      const info = await stat(pathOf(digest));
      return info.isFile() ? { size: info.size } : undefined;
    } catch (error) {
      if (isMissing(error)) return undefined;
      throw error;
    }
  };

  /** Moves a verified file under its digest; drops it when the blob is already there. */
  const adopt = async (file: string, digest: Digest): Promise<void> => {
    const path = pathOf(digest);
    const there = await stat_(digest);
    if (there !== undefined) {
      await unlink(file).catch(() => undefined);
      observer.stored?.(digest, there.size);
      return;
    }
    await ensureDir(dirname(path));
    await rename(file, path);
    await syncDir(dirname(path));
    const stored = await stat_(digest);
    if (stored !== undefined) observer.stored?.(digest, stored.size);
  };

  return {
    root,
    pathOf,
    stat: stat_,
    adopt,
    /** Whether a response is streaming the blob right now. */
    isReading: (digest: string): boolean => readers.has(digest),

    /** Every blob stored here with its size and last modification (ms), in no order. */
    scan: async (): Promise<Array<{ digest: Digest; size: number; mtimeMs: number }>> => {
      const out: Array<{ digest: Digest; size: number; mtimeMs: number }> = [];
      const list = async (dir: string) => readdir(dir).catch(() => [] as string[]);
      for (const algorithm of await list(blobsDir)) {
        for (const shard of await list(join(blobsDir, algorithm))) {
          for (const hex of await list(join(blobsDir, algorithm, shard))) {
            const info = await stat(join(blobsDir, algorithm, shard, hex)).catch(() => undefined);
            if (info?.isFile() !== true || hex.startsWith('.')) continue;
            out.push({
              digest: `${algorithm}:${hex}` as Digest,
              size: info.size,
              mtimeMs: info.mtimeMs,
            });
          }
        }
      }
      return out;
    },

    /** Opens a blob for reading, whole or a range; `BLOB_UNKNOWN` when absent. */
    read: async (digest: Digest, range?: ByteRange): Promise<BlobRead> => {
      let handle;
      try {
        handle = await open(pathOf(digest), 'r');
      } catch (error) {
        if (isMissing(error)) throw blobUnknown(digest);
        throw error;
      }
      try {
        const { size } = await handle.stat();
        const { start, end } = orThrow(resolveRange(size, range));
        if (end < start) {
          await handle.close();
          observer.read?.(digest);
          return { stream: Readable.from([]), size, start, end };
        }
        const stream = createReadStream(pathOf(digest), {
          fd: handle,
          start,
          end,
          autoClose: true,
          highWaterMark: readChunkBytes,
        });
        reading(digest, stream);
        return { stream, size, start, end };
      } catch (error) {
        await handle.close();
        throw error;
      }
    },

    /**
     * Streams a blob in, verifying its digest (and size when given) on the way, computing its
     * metainfo in the same pass when the size is known up front. On any mismatch or stream
     * error nothing becomes visible and the temporary file is removed.
     */
    ingest: async (
      digest: Digest,
      body: ByteSource,
      options: { size?: number; maxSize?: number; onBytes?: (n: number) => void } = {},
    ): Promise<BuiltBlob> => {
      const { size, maxSize } = options;
      if (size !== undefined && maxSize !== undefined && size > maxSize) throw tooLarge(maxSize);
      await ensureDir(tempDir);
      const temp = join(tempDir, `ingest-${randomBytes(12).toString('hex')}`);
      const builder =
        size === undefined ? sessionBuilder() : new MetainfoBuilder(pieceLengthFor(size));
      const handle = await open(temp, 'wx');
      let closed = false;
      try {
        const seen = builder.length;
        try {
          await appendStream(handle, 0, body as AsyncIterable<Uint8Array>, (chunk) => {
            const next = builder.length + chunk.length;
            if (size !== undefined && next > size) throw sizeMismatch(digest, size);
            if (maxSize !== undefined && next > maxSize) throw tooLarge(maxSize);
            builder.update(chunk);
          });
        } finally {
          options.onBytes?.(builder.length - seen);
        }
        if (size !== undefined && builder.length !== size) throw sizeMismatch(digest, size);
        const built = builder.finish();
        if (built.digest !== digest) throw digestMismatch(digest, built.digest);
        await handle.sync();
        await handle.close();
        closed = true;
        await adopt(temp, digest);
        return usableMetainfo(built);
      } catch (error) {
        if (!closed) await handle.close().catch(() => undefined);
        await unlink(temp).catch(() => undefined);
        throw error;
      }
    },

    /**
     * Starts storing a blob of known size that readers may follow while it arrives (an
     * owner's fill): see {@link GrowingBlob}. Verified and moved under its digest by
     * `commit`; never visible under the digest before.
     */
    beginFill: async (digest: Digest, size: number): Promise<GrowingBlob> => {
      await ensureDir(tempDir);
      const file = join(tempDir, `fill-${randomBytes(12).toString('hex')}`);
      const handle = await open(file, 'wx+');
      return createGrowingBlob({
        digest,
        size,
        file,
        handle,
        adopt,
        sizeMismatch: () => sizeMismatch(digest, size),
        digestMismatch: (computed) => digestMismatch(digest, computed),
      });
    },

    /** Removes a blob; resolves `true` when it was there. */
    remove: async (digest: Digest): Promise<boolean> => {
      try {
        await unlink(pathOf(digest));
        observer.removed?.(digest);
        return true;
      } catch (error) {
        if (isMissing(error)) return false;
        throw error;
      }
    },

    /** Deletes temporary files a crash left behind (call before serving). */
    sweepTemp: async (): Promise<number> => {
      let names: string[];
      try {
        names = await readdir(tempDir);
      } catch (error) {
        if (isMissing(error)) return 0;
        throw error;
      }
      await Promise.all(names.map((n) => unlink(join(tempDir, n)).catch(() => undefined)));
      return names.length;
    },
  };
};

export type ContentStore = ReturnType<typeof createContentStore>;

/** What the content store tells about its blobs as they change. */
export type ContentObserver = {
  readonly stored?: (digest: Digest, size: number) => void;
  readonly read?: (digest: Digest) => void;
  readonly removed?: (digest: Digest) => void;
};

/** Keeps a built metainfo only when its piece length is the one the final size calls for. */
export const usableMetainfo = (built: BuiltBlob): BuiltBlob =>
  built.metainfo !== undefined && built.metainfo.pieceLength !== pieceLengthFor(built.length)
    ? { ...built, metainfo: undefined }
    : built;

export const blobUnknown = (digest: string) =>
  new ShoalError('BLOB_UNKNOWN', `blob ${digest} is not known`, { detail: { digest } });

export const digestMismatch = (want: string, got: string) =>
  new ShoalError('DIGEST_INVALID', `content does not match digest ${want}`, {
    detail: { digest: want, computed: got },
  });

export const sizeMismatch = (digest: string, size: number) =>
  new ShoalError('SIZE_INVALID', `blob ${digest}: body is not the announced ${size} bytes`, {
    detail: { digest, size },
  });

export const tooLarge = (limit: number) =>
  new ShoalError('SIZE_INVALID', `blob exceeds the size limit of ${limit} bytes`, {
    detail: { limit },
  });

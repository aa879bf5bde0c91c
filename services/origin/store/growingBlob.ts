import type { FileHandle } from 'node:fs/promises';
import { unlink } from 'node:fs/promises';
import { Readable } from 'node:stream';
import type { ByteRange, ByteSource, Digest } from '../../../domain';
import { orThrow, resolveRange } from '../../../domain';
import type { BuiltBlob } from '../../../p2p/metainfo';
import { MetainfoBuilder, pieceLengthFor } from '../../../p2p/metainfo';
import { createFileAppender, maxQueuedBytes, readChunkBytes } from './files';

/** A range of a blob as a stream, with what `Content-Range` needs. */
export type GrowingRead = {
  readonly stream: Readable;
  readonly size: number;
  readonly start: number;
  readonly end: number;
};

/**
 * A blob stored while it is read: an owner filling a blob it lacks streams it from a peer or
 * the backend into a temporary file, and readers follow the writer through that file instead
 * of waiting for the whole blob (a multi-GiB fill would otherwise outlast a client's idle
 * timeout). Nothing is trusted before the end: the digest and size are checked once every
 * byte is in, and only then is the file fsynced and moved under its digest. Every reader
 * holds back the last byte of its range until then, so no reader ever completes with bytes
 * of a blob that failed verification: it gets an aborted stream instead.
 *
 * One writer (`append`, then `commit` or `abort`); any number of readers. The temporary
 * file's descriptor is shared (positional reads) and closed when the writer and the last
 * reader are done, so a rename or unlink under the readers changes nothing for them.
 */
export type GrowingBlob = {
  readonly digest: Digest;
  readonly size: number;
  /** Bytes accepted so far: where a source resuming the fill must start. */
  readonly received: number;
  /**
   * Appends a source's bytes until it ends. A source error (or more bytes than the size)
   * is thrown after the bytes accepted before it are written: another source may resume
   * at `received`.
   */
  append(source: ByteSource, onBytes?: (n: number) => void): Promise<void>;
  /**
   * Checks size and digest, fsyncs and moves the blob under its digest; then readers may
   * finish. On a mismatch the fill is aborted (readers fail) and the error is thrown.
   */
  commit(): Promise<BuiltBlob>;
  /** Gives up: readers fail with `error`, the temporary file is removed. */
  abort(error: unknown): Promise<void>;
  /**
   * Streams bytes `[start, end]` as they arrive (`RANGE_INVALID` for a range the size
   * cannot satisfy). `undefined` once the blob is stored and its file closed here: read it
   * from the store.
   */
  read(range?: ByteRange): GrowingRead | undefined;
};

export const createGrowingBlob = (options: {
  digest: Digest;
  size: number;
  /** The temporary file, opened for reading and writing; the growing blob owns it. */
  file: string;
  handle: FileHandle;
  /** Moves the verified, fsynced file under its digest. */
  adopt: (file: string, digest: Digest) => Promise<void>;
  /** Verification errors. */
  sizeMismatch: () => Error;
  digestMismatch: (computed: string) => Error;
}): GrowingBlob => {
  const { digest, size, file, handle } = options;
  const builder = new MetainfoBuilder(pieceLengthFor(size));
  const appender = createFileAppender(handle, 0);
  let received = 0;
  let state: 'filling' | 'stored' | 'failed' = 'filling';
  let failure: unknown;
  // The writer holds one reference until it commits or aborts; each open reader one more.
  let references = 1;
  let closed = false;
  let waiters: Array<() => void> = [];

  const notify = () => {
    const woken = waiters;
    waiters = [];
    for (const wake of woken) wake();
  };
  appender.onWritten(notify);
  const changed = () => new Promise<void>((resolve) => waiters.push(resolve));
  const release = () => {
    references -= 1;
    if (references === 0 && state !== 'filling' && !closed) {
      closed = true;
      void handle.close().catch(() => undefined);
    }
  };

  let writerDone = false;
  const endWriter = () => {
    if (writerDone) return;
    writerDone = true;
    release();
  };

  const abort = async (error: unknown): Promise<void> => {
    if (state !== 'filling') return;
    state = 'failed';
    failure = error;
    notify();
    await appender.settle().catch(() => undefined);
    await unlink(file).catch(() => undefined);
    endWriter();
  };

  const readerOf = (start: number, end: number): Readable => {
    let position = start;
    let pumping = false;
    const stream: Readable = new Readable({
      highWaterMark: readChunkBytes,
      read: () => void pump(),
      destroy: (error, callback) => {
        release();
        notify();
        callback(error);
      },
    });
    const pump = async (): Promise<void> => {
      if (pumping) return;
      pumping = true;
      try {
        for (;;) {
          if (stream.destroyed) return;
          if (state === 'failed') {
            stream.destroy(failure as Error);
            return;
          }
          // Until the blob is stored, the range's last byte stays back: the client cannot
          // take the answer for complete before the digest is known to match.
          const limit = state === 'stored' ? end + 1 : Math.min(appender.written, end);
          if (position >= limit) {
            if (state === 'stored') {
              stream.push(null);
              return;
            }
            await changed();
            continue;
          }
          const length = Math.min(limit - position, readChunkBytes);
          const buffer = Buffer.allocUnsafe(length);
          const { bytesRead } = await handle.read(buffer, 0, length, position);
          if (bytesRead === 0) throw new Error(`temporary file of ${digest} is short`);
          position += bytesRead;
          if (stream.destroyed) return;
          if (!stream.push(bytesRead === length ? buffer : buffer.subarray(0, bytesRead))) return;
        }
      } catch (error) {
        stream.destroy(error as Error);
      } finally {
        pumping = false;
      }
    };
    return stream;
  };

  return {
    digest,
    size,
    get received() {
      return received;
    },

    append: async (source, onBytes) => {
      if (state !== 'filling') throw new Error(`fill of ${digest} is over`);
      let accepted = 0;
      try {
        for await (const chunk of source as AsyncIterable<Uint8Array>) {
          if (received + chunk.length > size) throw options.sizeMismatch();
          received += chunk.length;
          accepted += chunk.length;
          builder.update(chunk);
          appender.push(chunk);
          if (appender.queued >= maxQueuedBytes) await appender.settle();
        }
        await appender.settle();
      } catch (error) {
        await appender.settle().catch(() => undefined);
        throw error;
      } finally {
        onBytes?.(accepted);
      }
    },

    commit: async () => {
      try {
        await appender.settle();
        if (received !== size) throw options.sizeMismatch();
        const built = builder.finish();
        if (built.digest !== digest) throw options.digestMismatch(built.digest);
        await handle.sync();
        await options.adopt(file, digest);
        state = 'stored';
        notify();
        endWriter();
        return built;
      } catch (error) {
        await abort(error);
        throw error;
      }
    },

    abort,

    read: (range) => {
      if (state === 'failed') throw failure;
      if (closed) return undefined;
      const { start, end } = orThrow(resolveRange(size, range));
      references += 1;
      return { stream: readerOf(start, end), size, start, end };
    },
  };
};

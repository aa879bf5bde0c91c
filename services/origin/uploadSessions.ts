import { randomUUID } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { open, readdir, stat, unlink } from 'node:fs/promises';
import { join } from 'node:path';
import type { ByteSource, Digest, RepoName } from '../../domain';
import { ShoalError, isShoalError } from '../../domain';
import { ensureDir, isMissing, syncDir } from '../../kit/fs';
import type { MetainfoBuilder } from '../../p2p/metainfo';
import type { BlobService, Published } from './blobService';
import type { OriginContext } from './context';
import { newSessionId, parseSessionId } from './client/sessionId';
import { createKeyedLocks } from './keyedLocks';
import { digestMismatch, tooLarge } from './store/contentStore';
import { createDiskGuard } from './store/diskGuard';
import { appendStream, readChunkBytes } from './store/files';
import { sessionBuilder } from './store/sessionBuilder';
import type { UploadRow } from './store/originDb';
import type { Attribution } from '../shared/events';

/**
 * Whom a session must belong to for an operation on it: the repository it was started in
 * (a session started in `a/` is not committed through `b/`) and its owner's actor. A session
 * that does not match is unknown to the caller (`BLOB_UPLOAD_UNKNOWN`).
 */
export type SessionBinding = { readonly repo?: string; readonly owner?: string };

/** How stale a session's `updatedAt` may get before an append refreshes it. */
const touchEveryMs = 60_000;

export type UploadStatus = { readonly id: string; readonly size: number; readonly repo: string };

const unknownSession = (id: string) =>
  new ShoalError('BLOB_UPLOAD_UNKNOWN', `upload ${id.slice(0, 80)} is not known here`, {
    detail: { upload: id.slice(0, 80) },
  });

/**
 * Upload sessions: a file per session in `<origin>/uploads/`, a row in the origin's db, and
 * in memory the running SHA-256 (and piece hashes) of the bytes so far. The file is the
 * truth: after a restart or a failed append the hash state is rebuilt by reading it, so a
 * session survives client errors and origin restarts, and its size is always what the
 * file holds. Operations on one session run one at a time.
 *
 * Commit is an outbox: the session is marked committed (with fixed event ids) in the db,
 * then the file is moved under its digest, the write-back and placement jobs enqueued and
 * the events appended, then the row goes. A crash anywhere in between is finished by
 * `recover()` at the next start, and appends repeat harmlessly.
 */
export const createUploadSessions = (ctx: OriginContext, blobs: BlobService) => {
  const { db, clock, logger, uploadsDir } = ctx;
  const hashes = new Map<string, MetainfoBuilder>();
  const sessions = createKeyedLocks();
  const maxSize = ctx.config.uploads.maxBlobSize;
  const disk = createDiskGuard(uploadsDir, ctx.config.uploads.minFreeDiskBytes);

  const withLock = <T>(id: string, fn: () => Promise<T>): Promise<T> => sessions.run(id, fn);

  /** The session's row, when the id names a session of this origin. */
  const rowOf = (id: string): UploadRow => {
    const parsed = parseSessionId(id);
    if (parsed === undefined || parsed.originId !== ctx.selfId) throw unknownSession(id);
    const row = db.getUpload(id);
    if (row === undefined) throw unknownSession(id);
    return row;
  };

  /** Refuses an operation that names another repository or comes from another owner. */
  const checkBinding = (row: UploadRow, binding: SessionBinding | undefined): void => {
    if (binding?.repo !== undefined && binding.repo !== row.repo) throw unknownSession(row.id);
    if (binding?.owner !== undefined && row.owner !== undefined && binding.owner !== row.owner) {
      throw unknownSession(row.id);
    }
  };

  const openRowOf = (id: string, binding?: SessionBinding): UploadRow => {
    const row = rowOf(id);
    checkBinding(row, binding);
    if (row.commit !== undefined) {
      throw new ShoalError('BLOB_UPLOAD_INVALID', `upload ${id} is already committed`);
    }
    return row;
  };

  const pathOf = (row: Pick<UploadRow, 'file'>) => join(uploadsDir, row.file);

  const sizeOf = async (row: UploadRow): Promise<number> => {
    try {
      return (await stat(pathOf(row))).size;
    } catch (error) {
      if (!isMissing(error)) throw error;
      forget(row.id);
      db.deleteUpload(row.id);
      throw unknownSession(row.id);
    }
  };

  const forget = (id: string) => hashes.delete(id);

  /** The hash state of the session's first `size` bytes: kept, or rebuilt from the file. */
  const hashOf = async (row: UploadRow, size: number): Promise<MetainfoBuilder> => {
    const kept = hashes.get(row.id);
    if (kept !== undefined && kept.length === size) return kept;
    const builder = sessionBuilder();
    if (size > 0) {
      for await (const chunk of createReadStream(pathOf(row), {
        start: 0,
        end: size - 1,
        highWaterMark: readChunkBytes,
      })) {
        builder.update(chunk as Buffer);
      }
    }
    if (builder.length !== size) throw new ShoalError('INTERNAL', `upload ${row.id} changed`);
    hashes.set(row.id, builder);
    return builder;
  };

  /**
   * Appends a body to an open session (the caller holds its lock). A body that would pass
   * the free-disk watermark ends the session: its file and row go, nothing stays behind.
   */
  const appendLocked = async (
    row: UploadRow,
    body: ByteSource,
    offset: number | undefined,
    declared: number | undefined,
  ): Promise<number> => {
    try {
      return await appendUnguarded(
        row,
        disk.guard(body as AsyncIterable<Uint8Array>, declared),
        offset,
      );
    } catch (error) {
      if (isShoalError(error, 'STORAGE_FULL')) {
        forget(row.id);
        await unlink(pathOf(row)).catch(() => undefined);
        db.deleteUpload(row.id);
        logger.warn({ err: error, upload: row.id }, 'upload refused: disk watermark');
      }
      throw error;
    }
  };

  const appendUnguarded = async (
    row: UploadRow,
    body: ByteSource,
    offset: number | undefined,
  ): Promise<number> => {
    const handle = await open(pathOf(row), 'r+').catch((error: unknown) => {
      if (isMissing(error)) {
        db.deleteUpload(row.id);
        throw unknownSession(row.id);
      }
      throw error;
    });
    try {
      const size = (await handle.stat()).size;
      if (offset !== undefined && offset !== size) {
        throw new ShoalError(
          'RANGE_INVALID',
          `upload ${row.id} has ${size} bytes; a chunk must start there, not at ${offset}`,
          { detail: { size, offset } },
        );
      }
      const builder = await hashOf(row, size);
      let received = size;
      try {
        const written = await appendStream(
          handle,
          size,
          body as AsyncIterable<Uint8Array>,
          (chunk) => {
            if (received + chunk.length > maxSize) throw tooLarge(maxSize);
            received += chunk.length;
            builder.update(chunk);
          },
        );
        // Acknowledged bytes survive a power loss, not only a crash of the process.
        if (written > 0) await handle.sync();
      } catch (error) {
        // The hash may have seen bytes that never reached the file: rebuild it next time.
        forget(row.id);
        throw error;
      } finally {
        ctx.metrics.bytesIn.inc({ source: 'upload' }, received - size);
      }
      // `updatedAt` only decides expiry (a day by default): refresh it now and then, not
      // with an fsync per chunk.
      const now = clock.now();
      if (now - row.updatedAt > touchEveryMs) db.touchUpload(row.id, now);
      return received;
    } finally {
      await handle.close();
    }
  };

  /** Moves a committed session's blob into place, records it, and ends the session. */
  const finishCommit = async (row: UploadRow): Promise<Published> => {
    const commit = row.commit;
    if (commit === undefined) throw new ShoalError('INTERNAL', `upload ${row.id} not committed`);
    const digest = commit.digest as Digest;
    const file = pathOf(row);
    const pending = await stat(file).then(
      () => true,
      (error: unknown) => {
        if (isMissing(error)) return false;
        throw error;
      },
    );
    // The blob's lock from landing on disk to being on the log: a drop of a collected copy
    // of the same digest waits, then sees this new life and keeps the bytes.
    return ctx.blobLocks.run(digest, async () => {
      if (pending) await ctx.content.adopt(file, digest);
      else if ((await ctx.content.stat(digest)) === undefined) {
        // Neither the session file nor the blob: nothing to finish (disk lost under us).
        logger.error({ upload: row.id, digest }, 'committed upload lost its content');
        db.deleteUpload(row.id);
        throw unknownSession(row.id);
      }
      // The session row stays until its jobs are stored: a crash before that finishes here
      // again at the next start. Jobs and the end of the session are one transaction.
      return blobs.publish(
        {
          digest,
          size: commit.size,
          repo: commit.repo,
          ...(commit.mediaType !== undefined && { mediaType: commit.mediaType }),
        },
        commit.eventIds,
        (jobs) => db.finishUpload(row.id, jobs, clock.now()),
        commit.by,
      );
    });
  };

  /** Finishes a session committed earlier whose events may not be on the log yet. */
  const finishPending = (id: string) =>
    withLock(id, async () => {
      const row = db.getUpload(id);
      if (row?.commit !== undefined) await finishCommit(row);
    });

  return {
    /** Opens a session in `repo` for `by` (its owner), within the per-owner cap. */
    start: async (repo: RepoName, by?: Attribution): Promise<UploadStatus> => {
      blobs.checkWritable(repo);
      const cap = ctx.config.uploads.maxOpenPerUser;
      if (by !== undefined && cap > 0 && db.openUploadCountOf(by.actor) >= cap) {
        throw new ShoalError(
          'DENIED',
          `${by.actor} has ${cap} open upload sessions on this origin; finish or cancel one`,
          { detail: { limit: cap } },
        );
      }
      const { id, file } = newSessionId(ctx.selfId);
      await ensureDir(uploadsDir);
      const handle = await open(join(uploadsDir, file), 'wx');
      await handle.close();
      await syncDir(uploadsDir);
      const now = clock.now();
      db.insertUpload({
        id,
        file,
        repo,
        ...(by !== undefined && { owner: by.actor }),
        createdAt: now,
        updatedAt: now,
      });
      hashes.set(id, sessionBuilder());
      return { id, size: 0, repo };
    },

    /**
     * Appends a chunk. With `offset`, it must equal the bytes received so far, else
     * `RANGE_INVALID` and nothing is written. Bytes received before a client error stay.
     */
    append: (
      id: string,
      body: ByteSource,
      options: { offset?: number; length?: number; binding?: SessionBinding } = {},
    ) =>
      withLock(id, async (): Promise<UploadStatus> => {
        const row = openRowOf(id, options.binding);
        const size = await appendLocked(row, body, options.offset, options.length);
        return { id, size, repo: row.repo };
      }),

    status: (id: string, binding?: SessionBinding) =>
      withLock(id, async (): Promise<UploadStatus> => {
        const row = openRowOf(id, binding);
        return { id, size: await sizeOf(row), repo: row.repo };
      }),

    /**
     * Ends a session: appends an optional last chunk, checks the digest of everything
     * received (`DIGEST_INVALID` otherwise: nothing becomes visible and the session stays
     * open for another try), then publishes the blob. Repeating a commit whose events did
     * not reach the log finishes it.
     */
    commit: (
      id: string,
      options: {
        digest: Digest;
        /** The repository the commit names: it must be the session's. */
        repo?: RepoName;
        mediaType?: string;
        body?: ByteSource;
        /** The body's length, when the request declares one (checked against the disk). */
        length?: number;
        /** Who commits: the session's owner; recorded on its events. */
        by?: Attribution;
      },
    ) =>
      withLock(id, async (): Promise<Published> => {
        let row = rowOf(id);
        checkBinding(row, {
          ...(options.repo !== undefined && { repo: options.repo }),
          ...(options.by !== undefined && { owner: options.by.actor }),
        });
        if (row.commit === undefined) {
          const size =
            options.body === undefined
              ? await sizeOf(row)
              : await appendLocked(row, options.body, undefined, options.length);
          const builder = await hashOf(row, size);
          const computed = builder.currentDigest();
          if (computed !== options.digest) throw digestMismatch(options.digest, computed);
          forget(id);
          const commit = {
            digest: options.digest,
            size,
            repo: row.repo,
            ...(options.mediaType !== undefined && { mediaType: options.mediaType }),
            eventIds: [randomUUID(), randomUUID()] as [string, string],
            ...(options.by !== undefined && { by: options.by }),
          };
          db.commitUpload(id, commit, [], clock.now());
          row = { ...row, commit };
        } else if (row.commit.digest !== options.digest) {
          throw new ShoalError(
            'BLOB_UPLOAD_INVALID',
            `upload ${id} was committed as another digest`,
          );
        }
        return finishCommit(row);
      }),

    cancel: (id: string, binding?: SessionBinding) =>
      withLock(id, async (): Promise<void> => {
        const row = openRowOf(id, binding);
        forget(id);
        await unlink(pathOf(row)).catch((error: unknown) => {
          if (!isMissing(error)) throw error;
        });
        db.deleteUpload(id);
      }),

    /**
     * Brings the sessions in line with the disk after a restart: finishes committed ones,
     * drops rows whose file is gone and files without a row. Run before serving.
     */
    recover: async (): Promise<{ finished: number; dropped: number }> => {
      let finished = 0;
      let dropped = 0;
      await ensureDir(uploadsDir);
      const files = new Set(await readdir(uploadsDir));
      const rows = db.allUploads();
      for (const row of rows) {
        if (row.commit !== undefined) {
          try {
            await finishPending(row.id);
            finished++;
          } catch (error) {
            logger.warn({ err: error, upload: row.id }, 'cannot finish a committed upload yet');
          }
        } else if (!files.has(row.file)) {
          db.deleteUpload(row.id);
          dropped++;
        }
      }
      const known = new Set(rows.map((r) => r.file));
      for (const file of files) {
        if (!known.has(file)) {
          await unlink(join(uploadsDir, file)).catch(() => undefined);
          dropped++;
        }
      }
      return { finished, dropped };
    },

    /** Deletes sessions idle for longer than the expiry; retries unfinished commits. */
    sweep: async (): Promise<number> => {
      const expired = db.expiredUploads(clock.now() - ctx.config.uploads.expireAfterMs);
      for (const row of expired) {
        await withLock(row.id, async () => {
          forget(row.id);
          await unlink(pathOf(row)).catch(() => undefined);
          db.deleteUpload(row.id);
        });
        logger.info({ upload: row.id }, 'upload session expired');
      }
      for (const row of db.allUploads().filter((r) => r.commit !== undefined)) {
        await finishPending(row.id).catch((error: unknown) =>
          logger.warn({ err: error, upload: row.id }, 'cannot finish a committed upload yet'),
        );
      }
      return expired.length;
    },
  };
};

export type UploadSessions = ReturnType<typeof createUploadSessions>;

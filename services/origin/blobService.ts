import { randomUUID } from 'node:crypto';
import { dirname } from 'node:path';
import { Readable } from 'node:stream';
import type { ByteRange, ByteSource, Digest, Position, RepoName } from '../../domain';
import {
  ShoalError,
  blobStream,
  isShoalError,
  lastCollection,
  placedInLife,
  orThrow,
  parseDigest,
  parseTag,
  truncate,
} from '../../domain';
import type { Metainfo } from '../../p2p/metainfo';
import {
  MetainfoBuilder,
  decodeMetainfo,
  encodeMetainfo,
  pieceLengthFor,
} from '../../p2p/metainfo';
import type { OriginContext } from './context';
import { askUpstream, pullThroughSourceOf, upstreamTagDigest } from './manifestSource';
import type { Attribution } from '../shared/events';
import { attributedWriter, newEvent } from '../shared/events';
import type { BlobRead } from './store/contentStore';
import { blobUnknown, sizeMismatch } from './store/contentStore';
import { createDiskGuard } from './store/diskGuard';
import { createBlobFiller } from './blobFill';
import type { NewJob } from './store/originDb';

/**
 * How a read may be served: `local` — from this origin's disk only (owners asking each
 * other); `repo` — the repository asking, which picks the backend a fill reads from.
 */
export type ReadOptions = { readonly local?: boolean; readonly repo?: string };

export type Published = {
  readonly digest: Digest;
  readonly size: number;
  readonly position: Position;
};

/** A manifest pulled through from an upstream registry and stored on this origin. */
export type PulledManifest = Published & {
  readonly mediaType: string;
  readonly bytes: Buffer;
};

/** A whole blob's store options: `replicaOf` marks a copy between owners (only placed). */
type WholeBlobOptions = {
  readonly repo?: RepoName;
  readonly mediaType?: string;
  readonly size?: number;
  readonly replicaOf?: string;
  /** Whom the push is for (the events' actor and client). */
  readonly by?: Attribution;
};

/**
 * Blobs on this origin: reads (local, else — for an owner — fetched from a peer that holds
 * it or from the backend by `blobFill`, kept, then served), whole-blob puts (pushes of manifests, copies
 * between owners), metainfo, and the bookkeeping every new blob needs: events on the log
 * and durable write-back and placement jobs.
 */
export const createBlobService = (ctx: OriginContext) => {
  const { content, db, ring, log, writer, selfId, logger } = ctx;
  // The origin's directory (uploads/ may not exist yet): the disk pushes land on.
  const disk = createDiskGuard(dirname(ctx.uploadsDir), ctx.config.uploads.minFreeDiskBytes);
  const metainfos = new Map<string, Promise<Metainfo>>();

  /**
   * Jobs for a blob this origin just took in: write it back to the backend its repository
   * routes to (none for a read-only backend: the bytes came from it), copy it to the other
   * owners.
   */
  const placementJobs = async (digest: Digest, repo?: string): Promise<NewJob[]> => {
    const owners = await ring.owners(digest);
    const backend = repo === undefined ? ctx.backends.fallback : ctx.backends.forRepo(repo);
    return [
      ...(backend.readOnly
        ? []
        : [{ kind: 'write-back', digest, target: backend.name, eventId: randomUUID() } as const]),
      ...owners
        .filter((o) => o.id !== selfId)
        .map((o): NewJob => ({ kind: 'place', digest, target: o.id, eventId: randomUUID() })),
    ];
  };

  const enqueuePlacement = async (digest: Digest, repo?: string): Promise<void> => {
    db.enqueue(await placementJobs(digest, repo), ctx.clock.now());
    ctx.wakeJobs();
  };

  /**
   * Records a blob pushed to a repository and held here: jobs first (so an acknowledged blob
   * is never left without its write-back), then `BlobUploaded` + `BlobPlaced` as one batch.
   *
   * With `enqueue`, the caller stores the jobs itself after the events are appended, in a
   * transaction of its own (an upload session ends in the same one): it must have a durable
   * record that finishes the publication after a crash (the committed session).
   */
  const publish = async (
    blob: { digest: Digest; size: number; repo: string; mediaType?: string },
    eventIds: readonly [string, string] = [randomUUID(), randomUUID()],
    enqueue?: (jobs: NewJob[]) => void,
    /** Whom the push is for: the events' actor and client (else the origin's own). */
    by?: Attribution,
  ): Promise<Published> => {
    const as = attributedWriter(writer, by);
    const jobs = await placementJobs(blob.digest, blob.repo);
    if (enqueue === undefined) {
      db.enqueue(jobs, ctx.clock.now());
      ctx.wakeJobs();
    }
    const position = await log.append([
      newEvent(
        as,
        'BlobUploaded',
        {
          digest: blob.digest,
          size: blob.size,
          repo: blob.repo,
          ...(blob.mediaType !== undefined && { mediaType: blob.mediaType }),
        },
        { id: eventIds[0] },
      ),
      newEvent(as, 'BlobPlaced', { digest: blob.digest, origin: selfId }, { id: eventIds[1] }),
    ]);
    if (enqueue !== undefined) {
      enqueue(jobs);
      ctx.wakeJobs();
    }
    await requeueAfterCollection(blob.digest, jobs);
    return { digest: blob.digest, size: blob.size, position };
  };

  /**
   * A blob uploaded again after GC collected it starts a new life. Its write-back may have
   * run (and ended) before the collection was on the log, and the eraser deletes the backend
   * object of the old life: queue the write-back again (a no-op while it is still queued; it
   * waits for the erasure, see the write-back handler).
   */
  const requeueAfterCollection = async (digest: Digest, jobs: readonly NewJob[]) => {
    const writeBacks = jobs.filter((job) => job.kind === 'write-back');
    if (writeBacks.length === 0) return;
    try {
      const events = await log.readStream(blobStream(digest));
      if (lastCollection(events) === undefined) return;
      db.enqueue(
        writeBacks.map((job) => ({ ...job, eventId: randomUUID() })),
        ctx.clock.now(),
      );
      ctx.wakeJobs();
    } catch (error) {
      logger.warn({ err: error, digest }, 'cannot check whether a blob was collected before');
    }
  };

  /** Refuses pushes to a repository served read-only by its backend (pull-through). */
  const checkWritable = (repo: string): void => {
    const backend = ctx.backends.forRepo(repo);
    if (backend.readOnly) {
      throw new ShoalError(
        'UNSUPPORTED',
        `repository ${repo} is served read-only from backend "${backend.name}"; push elsewhere`,
        { detail: { name: repo } },
      );
    }
  };

  const placedHere = async (digest: Digest): Promise<Position> =>
    log.append([newEvent(writer, 'BlobPlaced', { digest, origin: selfId })]);

  const storeMetainfo = (metainfo: Metainfo | undefined) => {
    if (metainfo !== undefined) db.putMetainfo(metainfo.digest, encodeMetainfo(metainfo));
  };

  const filler = createBlobFiller(ctx, { storeMetainfo, placedHere });

  /** Makes sure a blob is on local disk: an owner that lacks it fetches it. */
  const ensureLocal = async (digest: Digest, options: ReadOptions): Promise<void> => {
    if ((await content.stat(digest)) !== undefined) return;
    if (options.local || !(await ring.isOwner(digest))) throw blobUnknown(digest);
    await filler.fill(digest, options.repo).done;
  };

  /**
   * A blob, whole or a range. An owner that lacks it starts a fill (or joins the one
   * running) and streams the bytes as they arrive; the last byte waits for verification.
   */
  const read = async (
    digest: Digest,
    range?: ByteRange,
    options: ReadOptions = {},
  ): Promise<BlobRead> => {
    try {
      return await content.read(digest, range);
    } catch (error) {
      if (!isShoalError(error, 'BLOB_UNKNOWN')) throw error;
    }
    if (options.local || !(await ring.isOwner(digest))) throw blobUnknown(digest);
    const running = filler.fill(digest, options.repo);
    const growing = await running.growing;
    // An empty answer completes at once: nothing to stream before the check.
    if (growing.size === 0) await running.done;
    return growing.read(range) ?? content.read(digest, range);
  };

  const computeMetainfo = async (digest: Digest): Promise<Metainfo> => {
    const { stream, size } = await content.read(digest);
    const builder = new MetainfoBuilder(pieceLengthFor(size));
    for await (const chunk of stream) builder.update(chunk as Buffer);
    const metainfo = builder.digest();
    if (metainfo.digest !== digest) {
      logger.error({ digest, computed: metainfo.digest }, 'stored blob does not match its digest');
      throw new ShoalError('INTERNAL', `stored blob ${digest} is corrupt`);
    }
    storeMetainfo(metainfo);
    return metainfo;
  };

  /**
   * Stores a whole blob, verified against its digest, and publishes it (`put` without the
   * check that the repository is writable). A copy from another owner (`replicaOf`) is only
   * placed. When the blob is already here the body is left unread.
   */
  const storeWhole = (
    digest: Digest,
    body: ByteSource,
    options: { repo?: RepoName; mediaType?: string; size?: number; replicaOf?: string },
  ): Promise<{ digest: Digest; size: number; position?: Position }> =>
    ctx.blobLocks.run(digest, () => storeWholeLocked(digest, body, options));

  const storeWholeLocked = async (
    digest: Digest,
    body: ByteSource,
    options: WholeBlobOptions,
  ): Promise<{ digest: Digest; size: number; position?: Position }> => {
    const existing = await content.stat(digest);
    if (existing !== undefined && options.size !== undefined && existing.size !== options.size) {
      throw sizeMismatch(digest, options.size);
    }
    let size = existing?.size;
    if (size === undefined) {
      const built = await content.ingest(digest, body, {
        ...(options.size !== undefined && { size: options.size }),
        maxSize: ctx.config.uploads.maxBlobSize,
        onBytes: (n) =>
          ctx.metrics.bytesIn.inc({ source: options.replicaOf ? 'replica' : 'put' }, n),
      });
      storeMetainfo(built.metainfo);
      size = built.length;
    }
    if (options.replicaOf !== undefined) {
      // A copy kept from a life GC collected is recorded again, so its drop leaves it.
      if (
        existing !== undefined &&
        placedInLife(await log.readStream(blobStream(digest)), selfId)
      ) {
        return { digest, size };
      }
      return { digest, size, position: await placedHere(digest) };
    }
    if (options.repo === undefined) {
      throw new ShoalError('PARAMETER_INVALID', 'a blob put needs the repository it is for');
    }
    return publish(
      {
        digest,
        size,
        repo: options.repo,
        ...(options.mediaType !== undefined && { mediaType: options.mediaType }),
      },
      undefined,
      undefined,
      options.by,
    );
  };

  /**
   * Pull-through of a manifest (the proxy asks when a repository lacks a tag or digest): when
   * `repo` routes to a read-only backend that fronts another registry, fetches the manifest
   * from it (by tag or digest, its digest verified, with the backend's auth), stores the bytes
   * here as a blob of `repo` (`BlobUploaded` + `BlobPlaced`, copies to the digest's owners; no
   * write-back: they came from the backend) and answers them.
   *
   * `MANIFEST_UNKNOWN` when `repo` is no pull-through namespace or the upstream has no such
   * manifest; `STORAGE_UNAVAILABLE` (503) when the upstream cannot be reached; `DENIED` when it
   * refuses the repository to the configured credentials. Anything else the upstream gets
   * wrong (refused credentials, a manifest that does not match its digest) is a
   * `STORAGE_UNAVAILABLE` that names the cause.
   */
  const pullManifest = async (repo: RepoName, reference: string): Promise<PulledManifest> => {
    if (reference.includes(':')) orThrow(parseDigest(reference));
    else orThrow(parseTag(reference));
    const found = pullThroughSourceOf(ctx.backends, repo);
    if (found === undefined) {
      throw new ShoalError(
        'MANIFEST_UNKNOWN',
        `repository ${repo} is not pulled through from another registry`,
        { detail: { name: repo, reference: truncate(reference), pullThrough: false } },
      );
    }
    const { backend, source } = found;
    const pulled = await askUpstream(
      logger,
      { repo, reference, backend: backend.name, action: 'pull manifest' },
      () => source.fetchManifest(reference),
    );
    const stored = await storeWhole(pulled.digest, Readable.from([pulled.bytes]), {
      repo,
      size: pulled.bytes.length,
      ...(pulled.mediaType !== '' && { mediaType: pulled.mediaType }),
    });
    logger.info(
      { repo, reference: truncate(reference), digest: pulled.digest, backend: backend.name },
      'pulled a manifest through from the upstream registry',
    );
    return {
      digest: pulled.digest,
      size: stored.size,
      position: stored.position as Position,
      mediaType: pulled.mediaType,
      bytes: pulled.bytes,
    };
  };

  return {
    checkWritable,
    publish,
    enqueuePlacement,
    storeMetainfo,
    read,

    /** Fills a blob this origin owns but lacks (from peers, then backends), and places it. */
    fill: (digest: Digest): Promise<void> => filler.fill(digest).done,

    /** Size of a blob here, or (for an owner) anywhere it can be fetched from. */
    stat: async (
      digest: Digest,
      options: ReadOptions = {},
    ): Promise<{ size: number } | undefined> => {
      const here = await content.stat(digest);
      if (here !== undefined || options.local) return here;
      if (!(await ring.isOwner(digest))) return undefined;
      return filler.statAnywhere(digest, options.repo);
    },

    /**
     * Stores a whole blob, verified against its digest. A copy from another owner
     * (`replicaOf`) is only placed; anything else is published like a committed upload.
     * When the blob is already here the body is left unread.
     */
    put: async (
      digest: Digest,
      body: ByteSource,
      options: WholeBlobOptions,
    ): Promise<{ digest: Digest; size: number; position?: Position }> => {
      if (options.replicaOf === undefined && options.repo !== undefined) {
        checkWritable(options.repo);
      }
      // A push is held to the free-disk watermark; a copy between owners is retried anyway.
      const checked =
        options.replicaOf === undefined
          ? disk.guard(body as AsyncIterable<Uint8Array>, options.size)
          : body;
      return storeWhole(digest, checked, options);
    },

    pullManifest,

    /** See {@link upstreamTagDigest}: a pull-through tag's digest upstream (a `HEAD`). */
    upstreamDigest: (repo: RepoName, tag: string) =>
      upstreamTagDigest(ctx.backends, logger, repo, tag),

    /** Drops this origin's copy; refused while jobs still need it. */
    remove: async (digest: Digest): Promise<{ deleted: boolean }> => {
      if (db.jobsOf(digest).length > 0) {
        throw new ShoalError(
          'SERVICE_UNAVAILABLE',
          `blob ${digest} still has write-back or placement pending; try again later`,
        );
      }
      const deleted = await content.remove(digest);
      db.deleteMetainfo(digest);
      return { deleted };
    },

    /** The blob's metainfo, computed from the stored blob when not known yet. */
    metainfo: async (digest: Digest, options: ReadOptions = {}): Promise<Metainfo> => {
      const stored = db.getMetainfo(digest);
      if (stored !== undefined && (await content.stat(digest)) !== undefined) {
        const decoded = decodeMetainfo(stored);
        if (decoded.ok) return decoded.value;
      }
      await ensureLocal(digest, options);
      let pending = metainfos.get(digest);
      if (pending === undefined) {
        pending = computeMetainfo(digest).finally(() => metainfos.delete(digest));
        metainfos.set(digest, pending);
      }
      return pending;
    },
  };
};

export type BlobService = ReturnType<typeof createBlobService>;

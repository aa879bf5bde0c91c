import type { Readable } from 'node:stream';
import type { ByteSource, Digest, Position } from '../../domain';
import { ShoalError, blobStream, isShoalError } from '../../domain';
import type { Metainfo } from '../../p2p/metainfo';
import type { Backend } from './backendRouter';
import type { OriginContext } from './context';
import { blobUnknown, usableMetainfo } from './store/contentStore';
import type { GrowingBlob } from './store/growingBlob';

/** A fill in progress: readers attach once `growing` resolves. */
export type Fill = { readonly growing: Promise<GrowingBlob>; readonly done: Promise<void> };

/**
 * How an owner gets a blob it lacks: from the peers that hold it, then the backends, one
 * fill per blob at a time, resumed by the next source when one fails part-way. `placedHere`
 * records a finished fill on the log; `storeMetainfo` keeps the metainfo built on the way.
 */
export const createBlobFiller = (
  ctx: OriginContext,
  deps: {
    readonly storeMetainfo: (metainfo: Metainfo | undefined) => void;
    readonly placedHere: (digest: Digest) => Promise<Position>;
  },
) => {
  const { content, ring, log, selfId, logger } = ctx;
  const { storeMetainfo, placedHere } = deps;
  const fills = new Map<string, Fill>();

  /** Peers that reported a copy and are still ring members, with their addresses. */
  const holdingPeers = async (digest: Digest) => {
    const [holders, members] = await Promise.all([ring.holders(digest), ring.members()]);
    const address = new Map(members.map((m) => [m.id, m.address]));
    return holders
      .filter((id) => id !== selfId && address.has(id))
      .map((id) => ({ id, address: address.get(id) as string }));
  };

  /**
   * The backends that may hold a blob, in the order to try: the one the requesting
   * repository routes to, those the log says hold it (`BlobPersisted`), those of the
   * repositories it was pushed to (`BlobUploaded`), then the default backend.
   */
  const backendsOf = async (digest: Digest, repo: string | undefined): Promise<Backend[]> => {
    const found: Backend[] = [];
    const add = (backend: Backend | undefined) => {
      if (backend !== undefined && !found.some((b) => b.store === backend.store)) {
        found.push(backend);
      }
    };
    if (repo !== undefined) add(ctx.backends.forRepo(repo));
    if (ctx.backends.all.length > 1) {
      try {
        for (const event of await log.readStream(blobStream(digest))) {
          if (event.type === 'BlobPersisted') add(ctx.backends.byName(event.data.backend));
          if (event.type === 'BlobUploaded') add(ctx.backends.forRepo(event.data.repo));
        }
      } catch (error) {
        logger.warn({ err: error, digest }, 'cannot read where a blob was written back');
      }
    }
    add(ctx.backends.fallback);
    return found;
  };

  type Source =
    { kind: 'peer'; id: string; address: string } | { kind: 'backend'; backend: Backend };

  /**
   * Where a blob this origin lacks can be had, as tried in order: peers that hold it, then
   * the backends. A miss is checked twice, the second time after the placement projection
   * caught up with the log (a copy placed a moment ago may not be projected yet).
   */
  const sources = async function* (digest: Digest, repo?: string): AsyncGenerator<Source> {
    for (const fresh of [false, true]) {
      if (fresh) await ctx.catchUpRing();
      for (const peer of await holdingPeers(digest)) yield { kind: 'peer' as const, ...peer };
      for (const backend of await backendsOf(digest, repo)) {
        yield { kind: 'backend' as const, backend };
      }
    }
  };

  const statAt = async (digest: Digest, source: Source): Promise<{ size: number } | undefined> => {
    try {
      return source.kind === 'peer'
        ? await ctx.peer(source.address).statBlob(digest, { local: true })
        : await source.backend.store.stat(source.backend.objectName(digest));
    } catch (error) {
      logger.warn(
        { err: error, digest, source: describe(source) },
        'cannot ask a source for a blob',
      );
      return undefined;
    }
  };

  /** Opens a source's bytes from `start` on (`BLOB_UNKNOWN` when it lacks the blob). */
  const openSource = async (
    digest: Digest,
    source: Source,
    start: number,
  ): Promise<{ stream: ByteSource; size: number }> => {
    const range = start > 0 ? { start } : undefined;
    return source.kind === 'peer'
      ? ctx.peer(source.address).getBlob(digest, { local: true, ...(range && { range }) })
      : source.backend.store.get(source.backend.objectName(digest), range);
  };

  /** How a log line names a source (never a whole store object). */
  const describe = (source: Source) =>
    source.kind === 'peer'
      ? { kind: 'peer', id: source.id, address: source.address }
      : { kind: 'backend', backend: source.backend.name };

  /**
   * Fetches a blob this origin owns but lacks from the first source that has it, storing it
   * while readers follow (see `GrowingBlob`). A source that fails part-way is resumed by
   * the next one from where it stopped. `growing` resolves once a source answered (readers
   * can attach), `done` once the blob is verified and stored here.
   */
  const fill = (digest: Digest, repo?: string): Fill => {
    const running = fills.get(digest);
    if (running !== undefined) return running;
    let started!: (growing: GrowingBlob) => void;
    let failedToStart!: (error: unknown) => void;
    const growingPromise = new Promise<GrowingBlob>((resolve, reject) => {
      started = resolve;
      failedToStart = reject;
    });
    const done = (async () => {
      let growing: GrowingBlob | undefined;
      let complete: string | undefined;
      try {
        for await (const source of sources(digest, repo)) {
          const from = growing?.received ?? 0;
          let read: { stream: ByteSource; size: number };
          try {
            read = await openSource(digest, source, from);
          } catch (error) {
            if (!isShoalError(error, 'BLOB_UNKNOWN')) {
              logger.warn(
                { err: error, digest, source: describe(source) },
                'cannot fill a blob from a source',
              );
            }
            continue;
          }
          if (growing === undefined) {
            growing = await content.beginFill(digest, read.size).catch((error: unknown) => {
              (read.stream as Readable).destroy?.();
              throw error;
            });
            started(growing);
          } else if (read.size !== growing.size) {
            (read.stream as Readable).destroy?.();
            logger.warn(
              { digest, source: describe(source), size: read.size },
              'a source has another size',
            );
            continue;
          }
          try {
            await growing.append(read.stream, (n) =>
              ctx.metrics.bytesIn.inc({ source: 'fill' }, n),
            );
          } catch (error) {
            (read.stream as Readable).destroy?.();
            logger.warn(
              { err: error, digest, source: describe(source) },
              'a source failed part-way through a fill',
            );
            continue;
          }
          if (growing.received === growing.size) {
            complete = source.kind;
            break;
          }
        }
        if (growing === undefined) {
          ctx.metrics.fills.inc({ source: 'none' });
          throw blobUnknown(digest);
        }
        if (complete === undefined) {
          const error = new ShoalError(
            'SERVICE_UNAVAILABLE',
            `no source could provide all of ${digest}`,
          );
          await growing.abort(error);
          throw error;
        }
        const filled = growing;
        await ctx.blobLocks.run(digest, async () => {
          let built;
          try {
            built = await filled.commit();
          } catch (error) {
            ctx.metrics.fills.inc({ source: 'corrupt' });
            logger.error({ err: error, digest }, 'a fill did not match its digest');
            throw error;
          }
          storeMetainfo(usableMetainfo(built).metainfo);
          ctx.metrics.fills.inc({ source: complete });
          logger.info({ digest, source: complete }, 'filled a blob this origin owns');
          await placedHere(digest).catch((error: unknown) =>
            logger.error({ err: error, digest }, 'cannot record a filled blob as placed here'),
          );
        });
      } catch (error) {
        failedToStart(error);
        await growing?.abort(error);
        throw error;
      }
    })().finally(() => fills.delete(digest));
    // Callers await what they need; neither promise may go unhandled when nobody does.
    growingPromise.catch(() => undefined);
    done.catch(() => undefined);
    const entry: Fill = { growing: growingPromise, done };
    fills.set(digest, entry);
    return entry;
  };

  return {
    fill,
    /** Size of a blob at the first source that has it (peers, then backends). */
    statAnywhere: async (digest: Digest, repo?: string): Promise<{ size: number } | undefined> => {
      for await (const source of sources(digest, repo)) {
        const found = await statAt(digest, source);
        if (found !== undefined) return found;
      }
      return undefined;
    },
  };
};

export type BlobFiller = ReturnType<typeof createBlobFiller>;

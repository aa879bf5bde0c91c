import type { Digest } from '../../domain';
import { ShoalError, isShoalError } from '../../domain';
import type { Metainfo } from '../../p2p/metainfo';
import { infoHash as infoHashOf } from '../../p2p/metainfo';
import { openPieceStore } from '../../p2p/pieces';
import type { Swarm, SwarmHost } from '../../p2p/swarm';
import type { Logger } from '../shared/logger';
import type { Span } from '../shared/tracing';
import { inSpan } from '../shared/tracing';
import type { BlobCache } from './blobCache';

/** A complete, verified blob in the cache, pinned until `release`. */
export type CachedBlob = {
  readonly digest: string;
  readonly path: string;
  readonly size: number;
  readonly release: () => void;
};

/**
 * Blobs through the swarm: from the cache when there, else metainfo from the tracker and
 * pieces from peers and origins (each piece checked against its SHA-256, the whole blob
 * against its digest before it counts as complete). Concurrent requests for one blob share
 * one download. A complete blob's swarm keeps seeding (its scheduler's `seedTimeMs`), and a
 * cached blob rejoins its swarm when a peer dials for it.
 */
export const createBlobFetcher = (deps: {
  host: () => SwarmHost;
  cache: BlobCache;
  metainfo: (digest: Digest) => Promise<Metainfo>;
  downloadTimeoutMs: number;
  /** How long a retriable metainfo failure is retried (default 30 s). */
  metainfoRetryMs?: number;
  fsync: boolean;
  /** Check a completed blob's whole digest even when every piece was hashed on its way in. */
  verifyDigest?: boolean;
  logger: Logger;
}) => {
  const { cache, logger } = deps;
  const downloads = new Map<string, Promise<void>>();
  /** Digests of swarms seen, by info hash (to seed cached blobs on demand); bounded. */
  const known = new Map<string, Digest>();
  /** Recent metainfo (a 1 GiB blob's is ~64 KB of hashes): a small LRU, refetched after. */
  const metainfos = new Map<string, Metainfo>();

  const remember = <K, V>(map: Map<K, V>, key: K, value: V, max: number) => {
    map.delete(key);
    map.set(key, value);
    if (map.size > max) map.delete(map.keys().next().value as K);
  };

  /**
   * The tracker's answer, asked again on a retriable failure (a tracker starved of CPU by a
   * burst of pulls times out; that must not fail the pull) for at most `metainfoRetryMs`.
   */
  const askMetainfo = async (digest: Digest): Promise<Metainfo> => {
    const deadline = Date.now() + (deps.metainfoRetryMs ?? 30_000);
    for (let delay = 250; ; delay = Math.min(2 * delay, 4000)) {
      try {
        return await deps.metainfo(digest);
      } catch (error) {
        const retriable = isShoalError(error) && error.retriable;
        if (!retriable || Date.now() + delay > deadline) throw error;
        logger.debug({ digest, err: error, delay }, 'metainfo lookup failed: retrying');
        await new Promise((resolve) => setTimeout(resolve, delay));
      }
    }
  };

  /** Retried (`askMetainfo`) for downloads; a size lookup or a peer's dial fails fast. */
  const metainfoOf = async (digest: Digest, retry = false): Promise<Metainfo> => {
    const metainfo =
      metainfos.get(digest) ?? (await (retry ? askMetainfo(digest) : deps.metainfo(digest)));
    remember(metainfos, digest, metainfo, 256);
    remember(known, infoHashOf(metainfo), digest, 100_000);
    return metainfo;
  };

  /** Joins in progress by digest: one piece store per blob, however many ask at once. */
  const joining = new Map<string, Promise<Swarm>>();
  const join = (metainfo: Metainfo): Promise<Swarm> => {
    let pending = joining.get(metainfo.digest);
    if (pending === undefined) {
      pending = joinNow(metainfo).finally(() => joining.delete(metainfo.digest));
      joining.set(metainfo.digest, pending);
    }
    return pending;
  };

  /** Joins a blob's swarm over a piece store in the cache; the pin lasts the swarm's life. */
  const joinNow = async (metainfo: Metainfo): Promise<Swarm> => {
    const host = deps.host();
    const open = host.get(infoHashOf(metainfo));
    if (open !== undefined && !open.scheduler.closed) return open;
    const unpin = cache.pin(metainfo.digest);
    try {
      await cache.admit(metainfo.digest, metainfo.length);
      const store = await openPieceStore({
        dir: cache.dir,
        metainfo,
        fsync: deps.fsync,
        wholeDigest: deps.verifyDigest === true ? 'always' : 'when-resumed',
      });
      return host.join(metainfo, store, {
        onClose: (_swarm, reason) => {
          logger.debug({ digest: metainfo.digest, reason }, 'left a swarm');
          store.close().finally(unpin);
        },
      });
    } catch (error) {
      unpin();
      throw error;
    }
  };

  /**
   * Inside traced work (a pull), a `p2p.download` span covers the download: the tracker's
   * metainfo lookup nests under it, and it ends with the bytes that came from peers and from
   * origins.
   */
  const download = (digest: Digest): Promise<void> =>
    inSpan('p2p.download', { attributes: { 'shoal.digest': digest } }, (span) =>
      downloadNow(digest, span),
    );

  const downloadNow = async (digest: Digest, span: Span | undefined): Promise<void> => {
    const metainfo = await metainfoOf(digest, true);
    const swarm = await join(metainfo);
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(
        () =>
          reject(
            new ShoalError(
              'SERVICE_UNAVAILABLE',
              `blob ${digest} did not complete in ${deps.downloadTimeoutMs} ms`,
            ),
          ),
        deps.downloadTimeoutMs,
      );
    });
    try {
      await Promise.race([swarm.done, timeout]);
    } catch (error) {
      await swarm.leave('download failed');
      throw error instanceof ShoalError
        ? error
        : new ShoalError('SERVICE_UNAVAILABLE', `cannot fetch ${digest}: ${String(error)}`);
    } finally {
      clearTimeout(timer);
    }
    const stats = swarm.scheduler.stats;
    span?.setAttributes({
      'shoal.bytes': metainfo.length,
      'shoal.bytes_from_origins': stats.originBytes,
      'shoal.bytes_from_peers': Math.max(0, stats.bytesDownloaded - stats.originBytes),
    });
    cache.completed(digest);
  };

  return {
    /** Size of a blob: from the cache, else from its metainfo (no download). */
    size: async (digest: Digest): Promise<number> =>
      cache.lookup(digest)?.size ?? (await metainfoOf(digest)).length,

    /** The blob, complete and verified, pinned for the caller. */
    fetch: async (digest: Digest): Promise<CachedBlob> => {
      for (let attempt = 0; ; attempt += 1) {
        const release = cache.pin(digest);
        const hit = cache.lookup(digest);
        if (hit !== undefined) return { digest, ...hit, release };
        release();
        if (attempt > 0) throw new ShoalError('INTERNAL', `blob ${digest} vanished`);
        let pending = downloads.get(digest);
        if (pending === undefined) {
          pending = download(digest).finally(() => downloads.delete(digest));
          downloads.set(digest, pending);
        }
        await pending;
      }
    },

    /** For the host: a peer dials for a swarm we left; rejoin it if the blob is cached. */
    resolveUnknown: async (infoHash: string): Promise<Swarm | undefined> => {
      const digest = known.get(infoHash);
      if (digest === undefined || cache.lookup(digest) === undefined) return undefined;
      const metainfo = await metainfoOf(digest).catch(() => undefined);
      return metainfo === undefined ? undefined : join(metainfo);
    },

    downloading: () => downloads.size,
  };
};

export type BlobFetcher = ReturnType<typeof createBlobFetcher>;

import { statfs } from 'node:fs/promises';
import type { Digest } from '../../domain';
import {
  ShoalError,
  blobStream,
  currentLife,
  orThrow,
  parseBytes,
  persistedIn,
} from '../../domain';
import type { OriginContext } from './context';

/** A watermark: bytes of blobs this origin keeps, or a percentage of its disk in use. */
export type Watermark =
  | { readonly kind: 'bytes'; readonly bytes: number }
  | { readonly kind: 'percent'; readonly percent: number };

/** `90%` (of the disk), `500GiB`, `0` (off, with a high watermark of `0`). */
export const parseWatermark = (text: string, field: string): Watermark => {
  const percent = /^\s*(\d+(?:\.\d+)?)\s*%\s*$/.exec(text);
  if (percent !== null) {
    const value = Number(percent[1]);
    if (value > 100) {
      throw new ShoalError('CONFIG_INVALID', `${field}: ${text} is more than 100%`);
    }
    return { kind: 'percent', percent: value };
  }
  const bytes = parseBytes(text);
  if (!bytes.ok) {
    throw new ShoalError('CONFIG_INVALID', `${field}: want a size (500GiB) or a percentage (90%)`);
  }
  return { kind: 'bytes', bytes: orThrow(bytes) };
};

type Entry = { readonly digest: Digest; readonly size: number };

/**
 * The origin's local cache within watermarks: above `high`, blobs are evicted least recently
 * used first until `low`, and only blobs the backend holds — written back in their current
 * life (`BlobPersisted` since the last collection) or re-fetchable from a read-only backend
 * (pull-through) — and that nothing is doing: no job queued for them (write-back, copy),
 * no response streaming them, no upload or fill landing them. An evicted blob is fetched
 * from the backend again on the next read. Evictions are metrics, not events: the log holds
 * cluster facts, and the blob is still in the cluster.
 */
export const createEvictor = (
  ctx: OriginContext,
  options: { readonly high: Watermark; readonly low: Watermark; readonly intervalMs: number },
) => {
  const { content, db, metrics, logger } = ctx;
  /** Map order is recency: least recently used first. */
  const entries = new Map<Digest, Entry>();
  let used = 0;
  let timer: NodeJS.Timeout | undefined;
  let running: Promise<void> | undefined;

  const forget = (digest: Digest) => {
    const entry = entries.get(digest);
    if (entry === undefined) return;
    entries.delete(digest);
    used -= entry.size;
  };
  const remember = (digest: Digest, size: number) => {
    forget(digest);
    entries.set(digest, { digest, size });
    used += size;
  };

  /** How full the cache is against a watermark: bytes, or the disk's use in percent. */
  const measure = async (): Promise<{ over: (w: Watermark, freed: number) => boolean }> => {
    const disk = await statfs(content.root).catch(() => undefined);
    return {
      over: (w, freed) => {
        if (w.kind === 'bytes') return used - freed > w.bytes;
        if (disk === undefined) return false;
        const total = (disk.blocks - disk.bfree + disk.bavail) * disk.bsize;
        const inUse = (disk.blocks - disk.bfree) * disk.bsize - freed;
        return total > 0 && (inUse / total) * 100 > w.percent;
      },
    };
  };

  /** Whether the backend has the blob (so dropping the local copy loses nothing). */
  const backed = async (digest: Digest): Promise<boolean> => {
    const events = await ctx.log.readStream(blobStream(digest));
    if (persistedIn(events).length > 0) return true;
    const repos = currentLife(events).flatMap((e) =>
      e.type === 'BlobUploaded' ? [e.data.repo] : [],
    );
    return repos.length > 0 && repos.every((repo) => ctx.backends.forRepo(repo).readOnly);
  };

  const idle = (digest: Digest) =>
    !content.isReading(digest) && !ctx.blobLocks.busy(digest) && db.jobsOf(digest).length === 0;

  const evict = (entry: Entry): Promise<boolean> =>
    ctx.blobLocks.run(entry.digest, async () => {
      // Checked again under the lock: a read or a job may have started meanwhile.
      if (content.isReading(entry.digest) || db.jobsOf(entry.digest).length > 0) return false;
      if (!(await content.remove(entry.digest))) return false;
      db.deleteMetainfo(entry.digest);
      metrics.evictions.inc();
      metrics.evictedBytes.inc(entry.size);
      return true;
    });

  const check = async (): Promise<void> => {
    const gauge = await measure();
    if (!gauge.over(options.high, 0)) return;
    let freed = 0;
    let evicted = 0;
    for (const entry of [...entries.values()]) {
      if (!gauge.over(options.low, freed)) break;
      if (!idle(entry.digest) || !(await backed(entry.digest))) continue;
      if (await evict(entry)) {
        freed += entry.size;
        evicted += 1;
      }
    }
    if (evicted > 0) logger.info({ evicted, freed }, 'evicted blobs above the high watermark');
    if (gauge.over(options.low, freed)) {
      logger.warn(
        { used, evicted },
        'cache still above its low watermark: the rest is not written back yet or in use',
      );
    }
  };

  const tick = () => {
    running ??= check()
      .catch((error: unknown) => logger.warn({ err: error }, 'eviction check failed'))
      .finally(() => {
        running = undefined;
      });
  };

  const off = options.high.kind === 'bytes' ? options.high.bytes === 0 : options.high.percent === 0;

  return {
    observer: {
      stored: remember,
      read: (digest: Digest) => {
        const entry = entries.get(digest);
        if (entry !== undefined) remember(digest, entry.size);
      },
      removed: forget,
    },
    /** Indexes what is on disk (oldest first), then checks every `intervalMs`. */
    start: async (): Promise<void> => {
      const found = await content.scan();
      found.sort((a, b) => a.mtimeMs - b.mtimeMs);
      for (const blob of found) if (!entries.has(blob.digest)) remember(blob.digest, blob.size);
      if (off) return;
      timer = setInterval(tick, options.intervalMs);
      timer.unref();
    },
    /** Checks now (tests, and after a large commit). */
    check: async (): Promise<void> => {
      tick();
      await running;
    },
    stats: () => ({ used, blobs: entries.size }),
    stop: async (): Promise<void> => {
      if (timer !== undefined) clearInterval(timer);
      await running;
    },
  };
};

export type Evictor = ReturnType<typeof createEvictor>;

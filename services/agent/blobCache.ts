import { mkdir, readdir, stat, statfs, unlink } from 'node:fs/promises';
import { join } from 'node:path';
import { ShoalError } from '../../domain';
import { blobFileName } from '../../p2p/pieces';
import type { Logger } from '../shared/logger';

type Entry = {
  readonly digest: string;
  readonly size: number;
  complete: boolean;
  /** When a container last pulled it (or it completed), ms. */
  usedAt: number;
};

/** Watermarks on the disk the cache lives on, in percent of it in use. */
export type DiskWatermarks = { readonly highPercent: number; readonly lowPercent: number };

/**
 * The agent's blob cache: complete blobs (`sha256-<hex>`) and partial downloads (`.part`
 * and `.bitfield` sidecar, resumed by the piece store) in one directory, within a byte quota.
 * Least recently used blobs are evicted to make room, never a pinned one: a blob is pinned
 * while it downloads, while a response streams it, and while its swarm seeds it. When pinned
 * blobs alone exceed the quota, a new download still goes ahead (the quota is exceeded until
 * pins are released, then eviction catches up) unless the blob alone is larger than the quota.
 * `sweep` also evicts against the real disk (above `disk.highPercent` in use, down to
 * `disk.lowPercent`) and drops complete blobs no container pulled for `idleMs`. Evictions
 * are counted (metrics), never logged as events.
 */
export const createBlobCache = async (options: {
  dir: string;
  quotaBytes: number;
  logger: Logger;
  disk?: DiskWatermarks;
  /** Complete blobs not pulled for this long are dropped by `sweep` (0: never). */
  idleMs?: number;
  now?: () => number;
}) => {
  const { dir, quotaBytes, logger } = options;
  const now = options.now ?? Date.now;
  await mkdir(dir, { recursive: true });
  /** Map order is recency: least recently used first. */
  const entries = new Map<string, Entry>();
  const pins = new Map<string, number>();
  let used = 0;
  let evictions = 0;
  const evicted = { quota: 0, disk: 0, idle: 0 };

  // What a previous run left: complete blobs, and partial downloads to resume.
  const files = await readdir(dir);
  const found: Array<Entry & { at: number }> = [];
  for (const name of files) {
    const match = /^(sha256)-([0-9a-f]{64})(\.part)?$/.exec(name);
    if (match === null) continue;
    const info = await stat(join(dir, name)).catch(() => undefined);
    if (info === undefined || !info.isFile()) continue;
    const digest = `${match[1]}:${match[2]}`;
    const complete = match[3] === undefined;
    if (!complete && files.includes(`${name.slice(0, -'.part'.length)}`)) continue;
    found.push({ digest, size: info.size, complete, at: info.mtimeMs, usedAt: info.mtimeMs });
  }
  found.sort((a, b) => a.at - b.at);
  for (const entry of found) {
    entries.set(entry.digest, {
      digest: entry.digest,
      size: entry.size,
      complete: entry.complete,
      usedAt: entry.usedAt,
    });
    used += entry.size;
  }

  const remove = async (entry: Entry, reason: keyof typeof evicted = 'quota') => {
    entries.delete(entry.digest);
    used -= entry.size;
    evictions += 1;
    evicted[reason] += 1;
    const base = join(dir, blobFileName(entry.digest));
    for (const path of [base, `${base}.part`, `${base}.bitfield`]) {
      await unlink(path).catch(() => undefined);
    }
    logger.debug({ digest: entry.digest, size: entry.size }, 'evicted from the cache');
  };

  /** Evicts unpinned blobs, least recently used first, until `need` more bytes fit. */
  const makeRoom = async (need: number): Promise<void> => {
    for (const entry of [...entries.values()]) {
      if (used + need <= quotaBytes) return;
      if ((pins.get(entry.digest) ?? 0) > 0) continue;
      await remove(entry, 'quota');
    }
    if (used + need > quotaBytes) {
      logger.warn({ used, need, quotaBytes }, 'cache over quota: pinned blobs fill it');
    }
  };

  return {
    dir,
    /** A complete blob's path and size (and marks it recently used), or undefined. */
    lookup(digest: string): { path: string; size: number } | undefined {
      const entry = entries.get(digest);
      if (entry === undefined || !entry.complete) return undefined;
      entries.delete(digest);
      entries.set(digest, entry);
      entry.usedAt = now();
      return { path: join(dir, blobFileName(digest)), size: entry.size };
    },
    /** Keeps a blob from eviction until the returned function is called (once). */
    pin(digest: string): () => void {
      pins.set(digest, (pins.get(digest) ?? 0) + 1);
      let released = false;
      return () => {
        if (released) return;
        released = true;
        const left = (pins.get(digest) ?? 1) - 1;
        if (left > 0) pins.set(digest, left);
        else pins.delete(digest);
        if (used > quotaBytes) void makeRoom(0);
      };
    },
    /** Room for a download of `size` bytes (call pinned); the blob counts from now on. */
    async admit(digest: string, size: number): Promise<void> {
      if (size > quotaBytes) {
        throw new ShoalError(
          'STORAGE_UNAVAILABLE',
          `blob ${digest} (${size} bytes) is larger than the cache quota (${quotaBytes} bytes)`,
        );
      }
      const existing = entries.get(digest);
      if (existing !== undefined) {
        entries.delete(digest);
        entries.set(digest, existing);
        return;
      }
      await makeRoom(size);
      entries.set(digest, { digest, size, complete: false, usedAt: now() });
      used += size;
    },
    /** The download finished: the blob is complete in the cache. */
    completed(digest: string): void {
      const entry = entries.get(digest);
      if (entry !== undefined) {
        entry.complete = true;
        entry.usedAt = now();
      }
    },
    /** Complete blobs no container pulled for `idleMs` (their swarms may still seed them). */
    idle(): string[] {
      const idleMs = options.idleMs ?? 0;
      if (idleMs <= 0) return [];
      const before = now() - idleMs;
      return [...entries.values()]
        .filter((entry) => entry.complete && entry.usedAt <= before)
        .map((entry) => entry.digest);
    },
    /**
     * Drops complete, unpinned blobs no container pulled for `idleMs`, then evicts least
     * recently used unpinned blobs while the disk is above its high watermark, down to low.
     */
    async sweep(): Promise<{ idle: number; disk: number }> {
      const done = { idle: 0, disk: 0 };
      const idleMs = options.idleMs ?? 0;
      if (idleMs > 0) {
        const before = now() - idleMs;
        for (const entry of [...entries.values()]) {
          if (!entry.complete || entry.usedAt > before || (pins.get(entry.digest) ?? 0) > 0) {
            continue;
          }
          await remove(entry, 'idle');
          done.idle += 1;
        }
      }
      const disk = options.disk;
      if (disk === undefined || disk.highPercent <= 0) return done;
      const inUse = async () => {
        const fs = await statfs(dir);
        const total = (fs.blocks - fs.bfree + fs.bavail) * fs.bsize;
        return total === 0 ? 0 : (((fs.blocks - fs.bfree) * fs.bsize) / total) * 100;
      };
      if ((await inUse()) <= disk.highPercent) return done;
      for (const entry of [...entries.values()]) {
        if ((await inUse()) <= disk.lowPercent) break;
        if ((pins.get(entry.digest) ?? 0) > 0) continue;
        await remove(entry, 'disk');
        done.disk += 1;
      }
      if ((await inUse()) > disk.lowPercent) {
        logger.warn({ used, disk }, 'disk still above its low watermark: the rest is pinned');
      }
      return done;
    },
    /** A download failed for good: forget its bytes. */
    async discard(digest: string): Promise<void> {
      const entry = entries.get(digest);
      if (entry !== undefined && (pins.get(digest) ?? 0) === 0) await remove(entry);
    },
    stats: () => ({
      used,
      quota: quotaBytes,
      blobs: entries.size,
      pinned: pins.size,
      evictions,
      evicted: { ...evicted },
    }),
  };
};

export type BlobCache = Awaited<ReturnType<typeof createBlobCache>>;

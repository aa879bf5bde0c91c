import { createHash, randomBytes } from 'node:crypto';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { blobFileName } from '../../p2p/pieces';
import { silentLogger } from '../shared/logger';
import { createBlobCache } from './blobCache';

// The agent's cache on a real directory: finished blobs no container pulled for the idle
// time are dropped, and the disk watermarks are measured on the real file system.
describe('agent blob cache: idle drop and disk watermarks', () => {
  let dir: string;
  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), 'shoal-agent-cache-'));
  });
  afterEach(() => rmSync(dir, { recursive: true, force: true }));

  type Cache = Awaited<ReturnType<typeof createBlobCache>>;
  /** A finished download: admitted, its file written, completed. */
  const land = async (cache: Cache): Promise<string> => {
    const bytes = randomBytes(4096);
    const digest = `sha256:${createHash('sha256').update(bytes).digest('hex')}`;
    await cache.admit(digest, bytes.length);
    writeFileSync(join(dir, blobFileName(digest)), bytes);
    cache.completed(digest);
    return digest;
  };
  const onDisk = (digest: string) => existsSync(join(dir, blobFileName(digest)));

  it('drops finished blobs no container pulled for idleMs, never a pinned one', async () => {
    let now = 1_000_000;
    const cache = await createBlobCache({
      dir,
      quotaBytes: 1 << 30,
      logger: silentLogger(),
      idleMs: 60_000,
      now: () => now,
    });
    const pulled = await land(cache);
    const forgotten = await land(cache);
    const seeding = await land(cache);
    const unpin = cache.pin(seeding);
    now += 59_000;
    expect(cache.lookup(pulled)).toBeDefined(); // a container pulls it
    now += 2_000;
    expect(cache.idle().sort()).toEqual([forgotten, seeding].sort());
    expect(await cache.sweep()).toEqual({ idle: 1, disk: 0 });
    expect(onDisk(forgotten)).toBe(false);
    expect(onDisk(pulled)).toBe(true);
    expect(onDisk(seeding)).toBe(true); // its swarm leaves first (the agent does), then it goes
    unpin();
    expect(await cache.sweep()).toEqual({ idle: 1, disk: 0 });
    expect(onDisk(seeding)).toBe(false);
    expect(cache.stats().evicted).toEqual({ quota: 0, disk: 0, idle: 2 });
  });

  it('evicts unpinned blobs while the real disk is above its high watermark', async () => {
    // Any disk in use is above 0.0001 %: every unpinned blob goes, least recently used first.
    const cache = await createBlobCache({
      dir,
      quotaBytes: 1 << 30,
      logger: silentLogger(),
      disk: { highPercent: 0.0001, lowPercent: 0.00001 },
    });
    const a = await land(cache);
    const b = await land(cache);
    const unpin = cache.pin(b);
    expect(await cache.sweep()).toEqual({ idle: 0, disk: 1 });
    expect(onDisk(a)).toBe(false);
    expect(onDisk(b)).toBe(true);
    unpin();
    // A disk with room (high watermark 100 %) evicts nothing.
    const roomy = await createBlobCache({
      dir,
      quotaBytes: 1 << 30,
      logger: silentLogger(),
      disk: { highPercent: 100, lowPercent: 90 },
    });
    expect(await roomy.sweep()).toEqual({ idle: 0, disk: 0 });
    expect(onDisk(b)).toBe(true);
  });
});

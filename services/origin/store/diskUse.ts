import { opendir, stat } from 'node:fs/promises';
import { join } from 'node:path';

/** How long a measured size is reused: walking many blobs on every scrape would cost. */
const reuseMs = 15_000;
const cache = new Map<string, { at: number; bytes: Promise<number> }>();

const walk = async (dir: string): Promise<number> => {
  let total = 0;
  let handle;
  try {
    handle = await opendir(dir);
  } catch {
    return 0;
  }
  for await (const entry of handle) {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) total += await walk(path);
    else if (entry.isFile())
      total += await stat(path).then(
        (s) => s.size,
        () => 0,
      );
  }
  return total;
};

/** Bytes of the files under `dir` (measured at most every 15 s; missing files count 0). */
export const directoryBytes = (dir: string): Promise<number> => {
  const now = Date.now();
  const cached = cache.get(dir);
  if (cached !== undefined && now - cached.at < reuseMs) return cached.bytes;
  const bytes = walk(dir);
  cache.set(dir, { at: now, bytes });
  return bytes;
};

import { statfs } from 'node:fs/promises';
import { ShoalError } from '../../../domain';

/** How many bytes of a body may arrive between two looks at the free space. */
const checkEveryBytes = 8 * 1024 * 1024;

/**
 * The origin's free-disk watermark: a push is refused (`STORAGE_FULL`, 507) when what it
 * declares, or what it has written so far, would take the free space of the disk holding
 * `dir` below `minFreeBytes`. Other writers share the disk, so a body is checked again
 * every few megabytes while it streams in; 0 turns the guard off.
 */
export const createDiskGuard = (dir: string, minFreeBytes: number) => {
  const freeBytes = async () => {
    const stats = await statfs(dir);
    return Number(stats.bavail) * Number(stats.bsize);
  };
  const check = async (incoming: number): Promise<void> => {
    if (minFreeBytes <= 0) return;
    const free = await freeBytes();
    if (free - incoming < minFreeBytes) {
      throw new ShoalError(
        'STORAGE_FULL',
        `not enough free disk space under ${dir}: ${free} bytes free, ${incoming} more ` +
          `would pass the watermark of ${minFreeBytes} (uploads.minFreeDiskBytes)`,
        { detail: { free, incoming, minFreeBytes } },
      );
    }
  };
  return {
    check,
    /**
     * A body that fails with `STORAGE_FULL` once the disk would pass the watermark: checked
     * before the first byte (with `declared`, the body's length if known) and every few
     * megabytes after.
     */
    guard: async function* (
      source: AsyncIterable<Uint8Array>,
      declared: number | undefined,
    ): AsyncGenerator<Uint8Array> {
      await check(declared ?? 0);
      if (minFreeBytes <= 0) {
        yield* source;
        return;
      }
      let sinceCheck = 0;
      let seen = 0;
      for await (const chunk of source) {
        sinceCheck += chunk.length;
        seen += chunk.length;
        if (sinceCheck >= checkEveryBytes) {
          sinceCheck = 0;
          await check(declared === undefined ? chunk.length : Math.max(0, declared - seen));
        }
        yield chunk;
      }
    },
  };
};

export type DiskGuard = ReturnType<typeof createDiskGuard>;

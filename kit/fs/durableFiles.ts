import type { FileHandle } from 'node:fs/promises';
import { mkdir, open } from 'node:fs/promises';
import { dirname } from 'node:path';

/*
 * Helpers for files that must survive a crash: the origin's content store, the filesystem blob
 * store and the P2P piece store write through these. A rename or a new file is durable only
 * once its directory is fsynced; a write is complete only once every byte of it was taken
 * (short writes are rare on regular files, but allowed).
 */

/** fsync a directory, so the entries created or renamed in it survive a power loss. */
export const syncDir = async (dir: string): Promise<void> => {
  const handle = await open(dir, 'r');
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
};

/**
 * mkdir -p that also makes the new directory entries durable (fsyncs the parent of every
 * directory it created, deepest first). `sync: false` only creates them.
 */
export const ensureDir = async (dir: string, options: { sync?: boolean } = {}): Promise<void> => {
  const first = await mkdir(dir, { recursive: true });
  if (first === undefined || options.sync === false) return;
  for (let d = dir; ; d = dirname(d)) {
    await syncDir(dirname(d));
    if (d === first || dirname(d) === d) break;
  }
};

/**
 * Writes all of `bytes` at `position` (null: at the file's current offset); awaiting it is
 * the back-pressure on the source.
 */
export const writeAll = async (
  handle: FileHandle,
  bytes: Uint8Array,
  position: number | null = null,
): Promise<void> => {
  let offset = 0;
  while (offset < bytes.length) {
    const { bytesWritten } = await handle.write(
      bytes,
      offset,
      bytes.length - offset,
      position === null ? null : position + offset,
    );
    offset += bytesWritten;
  }
};

/** The parts of `buffers` past their first `done` bytes (after a short readv/writev). */
const remainder = <T extends Uint8Array>(buffers: readonly T[], done: number): T[] => {
  let skip = done;
  const rest: T[] = [];
  for (const buffer of buffers) {
    if (skip >= buffer.length) skip -= buffer.length;
    else {
      rest.push(skip === 0 ? buffer : (buffer.subarray(skip) as T));
      skip = 0;
    }
  }
  return rest;
};

/** Writes all of `buffers` at `position` with as few `writev` calls as the kernel allows. */
export const writevAll = async (
  handle: FileHandle,
  buffers: readonly Uint8Array[],
  position: number,
): Promise<void> => {
  let rest = buffers;
  let at = position;
  while (rest.length > 0) {
    const { bytesWritten } = await handle.writev(rest as Uint8Array[], at);
    at += bytesWritten;
    rest = remainder(rest, bytesWritten);
  }
};

/**
 * Fills `buffers` in order from `position` with as few `readv` calls as the kernel allows
 * (one, unless it reads short); false when the file ends first.
 */
export const readvAll = async (
  handle: FileHandle,
  buffers: readonly Buffer[],
  position: number,
): Promise<boolean> => {
  let rest = buffers.filter((buffer) => buffer.length > 0);
  let at = position;
  while (rest.length > 0) {
    const { bytesRead } = await handle.readv(rest, at);
    if (bytesRead === 0) return false;
    at += bytesRead;
    rest = remainder(rest, bytesRead);
  }
  return true;
};

/** Whether a file system error says the path (or a directory on it) does not exist. */
export const isMissing = (error: unknown): boolean => {
  const code = (error as NodeJS.ErrnoException | null)?.code;
  return code === 'ENOENT' || code === 'ENOTDIR';
};

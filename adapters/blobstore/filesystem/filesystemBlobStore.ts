import { randomBytes } from 'node:crypto';
import type { Dirent } from 'node:fs';
import { createReadStream } from 'node:fs';
import { open, readdir, rename, stat, unlink } from 'node:fs/promises';
import { dirname, join, relative, sep } from 'node:path';
import { Readable } from 'node:stream';
import type { BlobStore, ByteRange, ByteSource, ObjectRead, ObjectStat } from '../../../domain';
import { ShoalError, isShoalError, orThrow, parseObjectName, resolveRange } from '../../../domain';
import { ensureDir, isMissing, syncDir, writeAll } from '../../../kit/fs';

export type FilesystemBlobStoreOptions = {
  /** Directory holding the objects; created on first write. */
  readonly root: string;
  /** The backend's name in `BlobPersisted` (default `filesystem`). */
  readonly name?: string;
  /**
   * fsync file and directory before a put resolves (default true). Off only for tests and
   * scratch stores: without it a power loss may lose an acknowledged object.
   */
  readonly fsync?: boolean;
};

/** Partial writes live here, beside the objects (same filesystem: rename is atomic). */
const tempDirName = '.tmp';

/**
 * A BlobStore on a local or mounted filesystem: object `a/b/c` is the file `<root>/a/b/c`.
 * A put streams into `<root>/.tmp/<random>`, fsyncs it, renames it into place and fsyncs the
 * directory, so an object is visible whole or not at all, also across a crash. Names never
 * start with `.`, so temp files are never listed and never collide with objects.
 */
export const createFilesystemBlobStore = (options: FilesystemBlobStoreOptions): BlobStore => {
  const root = options.root;
  const durable = options.fsync ?? true;
  const tempDir = join(root, tempDirName);
  const pathOf = (name: string) => join(root, ...orThrow(parseObjectName(name)).split('/'));

  return {
    name: options.name ?? 'filesystem',

    stat: async (name): Promise<ObjectStat | undefined> => {
      const path = pathOf(name);
      try {
        const info = await stat(path);
        return info.isFile() ? { size: info.size } : undefined;
      } catch (error) {
        if (isMissing(error)) return undefined;
        throw storageError(error, `stat ${name}`);
      }
    },

    get: async (name, range?: ByteRange): Promise<ObjectRead> => {
      const path = pathOf(name);
      let handle;
      try {
        handle = await open(path, 'r');
      } catch (error) {
        if (isMissing(error) || isDirectory(error)) throw unknown(name);
        throw storageError(error, `open ${name}`);
      }
      try {
        const info = await handle.stat();
        if (!info.isFile()) throw unknown(name);
        const { start, end } = orThrow(resolveRange(info.size, range));
        // An empty read still needs a stream that ends: createReadStream with end < start
        // would read to the end of the file.
        const stream =
          end < start
            ? emptyStream(handle)
            : createReadStream(path, { fd: handle, start, end, autoClose: true });
        return { stream, size: info.size, start, end };
      } catch (error) {
        await handle.close();
        throw error;
      }
    },

    put: async (name, body: ByteSource, putOptions = {}) => {
      const path = pathOf(name);
      const expected = putOptions.size;
      await ensureDir(tempDir, { sync: durable }).catch((error: unknown) => {
        throw storageError(error, `create ${tempDir}`);
      });
      const temp = join(tempDir, randomBytes(12).toString('hex'));
      let written = 0;
      let handle;
      try {
        handle = await open(temp, 'wx');
      } catch (error) {
        throw storageError(error, `create a temporary file for ${name}`);
      }
      try {
        try {
          for await (const chunk of body as AsyncIterable<Uint8Array | string>) {
            const bytes = typeof chunk === 'string' ? Buffer.from(chunk) : chunk;
            written += bytes.length;
            if (expected !== undefined && written > expected) throw sizeMismatch(name, expected);
            // Awaiting each write is the back-pressure: the source is read no faster.
            await writeAll(handle, bytes);
          }
        } catch (error) {
          throw isShoalError(error) || !isFsError(error) ? error : storageError(error, name);
        }
        if (expected !== undefined && written !== expected) throw sizeMismatch(name, expected);
        if (durable) await handle.sync();
        await handle.close();
        handle = undefined;
        await ensureDir(dirname(path), { sync: durable });
        await rename(temp, path);
        if (durable) await syncDir(dirname(path));
        return { size: written };
      } catch (error) {
        await handle?.close().catch(() => undefined);
        await unlink(temp).catch(() => undefined);
        throw isShoalError(error) || !isFsError(error) ? error : storageError(error, name);
      }
    },

    delete: async (name) => {
      const path = pathOf(name);
      try {
        await unlink(path);
      } catch (error) {
        if (isMissing(error)) return false;
        if (isDirectory(error)) return false;
        throw storageError(error, `delete ${name}`);
      }
      if (durable) await syncDir(dirname(path));
      return true;
    },

    list: (prefix = '') => listObjects(root, prefix),
  };
};

async function* listObjects(root: string, prefix: string): AsyncGenerator<string> {
  // Start at the deepest directory the prefix names completely; filter the rest by string.
  const slash = prefix.lastIndexOf('/');
  const base = slash === -1 ? '' : prefix.slice(0, slash);
  if (base !== '') orThrow(parseObjectName(base));
  const start = base === '' ? root : join(root, ...base.split('/'));
  yield* walk(root, start, prefix);
}

async function* walk(root: string, dir: string, prefix: string): AsyncGenerator<string> {
  let entries: Dirent[];
  try {
    entries = await readdir(dir, { withFileTypes: true });
  } catch (error) {
    if (isMissing(error)) return;
    throw storageError(error, `list ${dir}`);
  }
  // Sorting directories as `name/` makes this depth-first walk yield names in code-point
  // order of the whole name (`a.b` < `a/c`), as S3 and GCS list.
  const keyed = entries
    .filter((e) => !e.name.startsWith('.') && (e.isFile() || e.isDirectory()))
    .map((e) => ({ entry: e, key: e.isDirectory() ? `${e.name}/` : e.name }))
    .sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0));
  for (const { entry } of keyed) {
    const path = join(dir, entry.name);
    const name = relative(root, path).split(sep).join('/');
    if (entry.isDirectory()) {
      // Descend only where names below can still match the prefix.
      const asDir = `${name}/`;
      if (asDir.startsWith(prefix) || prefix.startsWith(asDir)) yield* walk(root, path, prefix);
    } else if (name.startsWith(prefix)) {
      yield name;
    }
  }
}

const emptyStream = (handle: Awaited<ReturnType<typeof open>>) => {
  // Close the descriptor we opened, then hand out a stream that ends at once.
  void handle.close();
  return Readable.from([]);
};

const isDirectory = (error: unknown) => (error as NodeJS.ErrnoException | null)?.code === 'EISDIR';
const isFsError = (error: unknown) =>
  typeof (error as NodeJS.ErrnoException | null)?.code === 'string' &&
  typeof (error as NodeJS.ErrnoException).syscall === 'string';

const unknown = (name: string) =>
  new ShoalError('BLOB_UNKNOWN', `object ${name} does not exist`, { detail: { name } });

const sizeMismatch = (name: string, expected: number) =>
  new ShoalError('SIZE_INVALID', `object ${name}: body is not the announced ${expected} bytes`, {
    detail: { name, size: expected },
  });

const storageError = (error: unknown, what: string) =>
  new ShoalError(
    'STORAGE_UNAVAILABLE',
    `filesystem store: ${what}: ${(error as NodeJS.ErrnoException).code ?? 'error'}`,
    { cause: error },
  );

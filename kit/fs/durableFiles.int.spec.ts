import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import type { FileHandle } from 'node:fs/promises';
import { open, readFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ensureDir, isMissing, readvAll, syncDir, writeAll, writevAll } from './durableFiles';

/** A handle over a byte array that takes at most `max` bytes per call and counts calls. */
const shortWriter = (max: number) => {
  const bytes = Buffer.alloc(1024);
  let calls = 0;
  const handle = {
    writev: async (buffers: Uint8Array[], position: number) => {
      calls += 1;
      const all = Buffer.concat(buffers);
      const n = Math.min(max, all.length);
      all.copy(bytes, position, 0, n);
      return { bytesWritten: n, buffers };
    },
    write: async (buffer: Uint8Array, offset: number, length: number, position: number) => {
      calls += 1;
      const n = Math.min(max, length);
      Buffer.from(buffer).copy(bytes, position, offset, offset + n);
      return { bytesWritten: n, buffer };
    },
  };
  return { handle: handle as unknown as FileHandle, bytes, calls: () => calls };
};

describe('durable file helpers', () => {
  let dir: string;
  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), 'shoal-kit-fs-'));
  });
  afterEach(() => rmSync(dir, { recursive: true, force: true }));

  it('writevAll finishes partial writes', async () => {
    const fake = shortWriter(3);
    const buffers = [Buffer.from('abcd'), Buffer.from(''), Buffer.from('efghij')];
    await writevAll(fake.handle, buffers, 10);
    expect(fake.bytes.subarray(10, 20).toString()).toBe('abcdefghij');
    expect(fake.calls()).toBe(4);
  });

  it('readvAll fills every buffer across short reads, and says when the file ends', async () => {
    const bytes = Buffer.from('0123456789abcdefghij');
    let calls = 0;
    const handle = {
      readv: async (buffers: Buffer[], position: number) => {
        calls += 1;
        // At most 3 bytes per call, into the first buffer only.
        const n = Math.max(0, Math.min(3, buffers[0]?.length ?? 0, bytes.length - position));
        bytes.copy(buffers[0] as Buffer, 0, position, position + n);
        return { bytesRead: n, buffers };
      },
    } as unknown as FileHandle;
    const targets = [Buffer.alloc(4), Buffer.alloc(0), Buffer.alloc(5)];
    expect(await readvAll(handle, targets, 5)).toBe(true);
    expect(Buffer.concat(targets).toString()).toBe('56789abcd');
    expect(calls).toBe(4);
    expect(await readvAll(handle, [Buffer.alloc(8)], 15)).toBe(false);
  });

  it('writeAll finishes partial writes at a position', async () => {
    const fake = shortWriter(4);
    await writeAll(fake.handle, Buffer.from('0123456789'), 100);
    expect(fake.bytes.subarray(100, 110).toString()).toBe('0123456789');
    expect(fake.calls()).toBe(3);
  });

  it('writeAll appends at the current offset by default', async () => {
    const path = join(dir, 'f');
    const handle = await open(path, 'w');
    await writeAll(handle, Buffer.from('head-'));
    await writeAll(handle, Buffer.from('tail'));
    await handle.close();
    expect(await readFile(path, 'utf8')).toBe('head-tail');
  });

  it('ensureDir creates every missing level, synced or not, and accepts existing ones', async () => {
    const deep = join(dir, 'a', 'b', 'c');
    await ensureDir(deep);
    expect(statSync(deep).isDirectory()).toBe(true);
    await ensureDir(deep);
    const other = join(dir, 'x', 'y');
    await ensureDir(other, { sync: false });
    expect(statSync(other).isDirectory()).toBe(true);
    await syncDir(other);
  });

  it('isMissing names a missing path and a file in the way, nothing else', async () => {
    const file = join(dir, 'file');
    writeFileSync(file, '');
    const errorOf = (path: string) => {
      try {
        readFileSync(path);
        return undefined;
      } catch (error) {
        return error;
      }
    };
    expect(isMissing(errorOf(join(dir, 'nope')))).toBe(true);
    expect(isMissing(errorOf(join(file, 'below')))).toBe(true);
    expect(isMissing(errorOf(dir))).toBe(false);
    expect(isMissing(null)).toBe(false);
  });
});

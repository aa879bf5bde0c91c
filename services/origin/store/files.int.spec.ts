import { randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import type { FileHandle } from 'node:fs/promises';
import { open } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { appendStream } from './files';

/** A handle over a byte array that writes at most `max` bytes per call and counts calls. */
const fakeHandle = (max: number, failAfter = Infinity) => {
  const bytes = Buffer.alloc(1024);
  let calls = 0;
  const handle = {
    writev: async (buffers: Uint8Array[], position: number) => {
      calls += 1;
      if (calls > failAfter) throw Object.assign(new Error('disk full'), { code: 'ENOSPC' });
      const all = Buffer.concat(buffers);
      const n = Math.min(max, all.length);
      all.copy(bytes, position, 0, n);
      return { bytesWritten: n, buffers };
    },
  };
  return { handle: handle as unknown as FileHandle, bytes, calls: () => calls };
};

describe('batched file appends', () => {
  let dir: string;
  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), 'shoal-files-'));
  });
  afterEach(() => rmSync(dir, { recursive: true, force: true }));

  it('writes every chunk in order, from the offset, in fewer writes than chunks', async () => {
    const chunks = Array.from({ length: 200 }, (_, i) => randomBytes(1000 + i));
    const path = join(dir, 'f');
    const handle = await open(path, 'w+');
    await handle.write(Buffer.from('head'));
    let writes = 0;
    const writev = handle.writev.bind(handle);
    handle.writev = (async (buffers: Uint8Array[], position?: number) => {
      writes += 1;
      return writev(buffers, position);
    }) as typeof handle.writev;
    const seen: number[] = [];
    const source = (async function* () {
      for (const chunk of chunks) yield chunk;
    })();
    const written = await appendStream(handle, 4, source, (chunk) => seen.push(chunk.length));
    await handle.close();
    expect(written).toBe(chunks.reduce((n, c) => n + c.length, 0));
    expect(seen).toEqual(chunks.map((c) => c.length));
    expect(readFileSync(path).equals(Buffer.concat([Buffer.from('head'), ...chunks]))).toBe(true);
    expect(writes).toBeLessThan(chunks.length);
  });

  it('keeps what the source gave before it failed, then throws its error', async () => {
    const fake = fakeHandle(1024);
    const source = (async function* () {
      yield Buffer.from('kept');
      yield Buffer.from('-too');
      throw new Error('client went away');
    })();
    await expect(appendStream(fake.handle, 0, source, () => undefined)).rejects.toThrow(
      'client went away',
    );
    expect(fake.bytes.subarray(0, 8).toString()).toBe('kept-too');
  });

  it('stops on a chunk the caller refuses, keeping the ones before', async () => {
    const fake = fakeHandle(1024);
    const source = (async function* () {
      yield Buffer.from('ok');
      yield Buffer.from('too big');
    })();
    const inspect = (chunk: Uint8Array) => {
      if (chunk.length > 2) throw new Error('refused');
    };
    await expect(appendStream(fake.handle, 0, source, inspect)).rejects.toThrow('refused');
    expect(fake.bytes.subarray(0, 3)).toEqual(Buffer.from([0x6f, 0x6b, 0]));
  });

  it('surfaces a write error', async () => {
    const fake = fakeHandle(1024, 0);
    const source = (async function* () {
      yield Buffer.from('x');
      yield Buffer.from('y');
    })();
    await expect(appendStream(fake.handle, 0, source, () => undefined)).rejects.toThrow(
      'disk full',
    );
  });
});

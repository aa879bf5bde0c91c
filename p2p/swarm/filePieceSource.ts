import type { FileHandle } from 'node:fs/promises';
import { open } from 'node:fs/promises';
import { Readable } from 'node:stream';
import type { Metainfo } from '../metainfo';
import { pieceBounds, pieceCountOf } from '../metainfo';
import type { PieceSource } from '../scheduler';
import { Bitfield } from '../wire';

/**
 * A complete blob file served piece by piece (an origin's stored blob, an agent's cached
 * blob): every piece present, reads through one FileHandle. The file was verified against
 * its digest when it was stored; this only checks its length.
 */
export const openFilePieceSource = async (
  path: string,
  metainfo: Metainfo,
): Promise<PieceSource & { readonly close: () => Promise<void> }> => {
  const file = await open(path, 'r');
  const { size } = await file.stat();
  if (size !== metainfo.length) {
    await file.close();
    throw new Error(`${path} is ${size} bytes, the metainfo says ${metainfo.length}`);
  }
  const count = pieceCountOf(metainfo.length, metainfo.pieceLength);
  let closed = false;
  const sizeOf = (index: number) => {
    const { start, end } = pieceBounds(metainfo, index);
    return end - start;
  };
  return {
    pieceCount: count,
    complete: true,
    count,
    has: (index) => !closed && Number.isInteger(index) && index >= 0 && index < count,
    bitfield: () => Bitfield.full(count),
    pieceSize: sizeOf,
    createReadStream: (index, begin = 0, length) => {
      if (closed || index < 0 || index >= count) return undefined;
      const n = length ?? sizeOf(index) - begin;
      if (begin < 0 || n < 1 || begin + n > sizeOf(index)) return undefined;
      return readRange(file, pieceBounds(metainfo, index).start + begin, n);
    },
    read: async (index, begin = 0, length) => {
      if (closed || index < 0 || index >= count) return undefined;
      const n = length ?? sizeOf(index) - begin;
      if (begin < 0 || n < 1 || begin + n > sizeOf(index)) return undefined;
      const buffer = Buffer.allocUnsafe(n);
      const start = pieceBounds(metainfo, index).start + begin;
      for (let filled = 0; filled < n;) {
        const { bytesRead } = await file.read(buffer, filled, n - filled, start + filled);
        if (bytesRead === 0) throw new Error('the blob file is shorter than its metainfo');
        filled += bytesRead;
      }
      return buffer;
    },
    close: async () => {
      if (closed) return;
      closed = true;
      await file.close();
    },
  };
};

/** `[start, start + length)` of a file in 64 KiB reads through a shared FileHandle. */
const readRange = (file: FileHandle, start: number, length: number): Readable => {
  let position = start;
  const end = start + length;
  return new Readable({
    highWaterMark: 64 * 1024,
    read(size) {
      const n = Math.min(Math.max(size, 16 * 1024), end - position);
      if (n <= 0) {
        this.push(null);
        return;
      }
      const buffer = Buffer.allocUnsafe(n);
      file.read(buffer, 0, n, position).then(
        ({ bytesRead }) => {
          if (bytesRead === 0) {
            this.destroy(new Error('the blob file is shorter than its metainfo'));
            return;
          }
          position += bytesRead;
          this.push(bytesRead === n ? buffer : buffer.subarray(0, bytesRead));
        },
        (error: Error) => this.destroy(error),
      );
    },
  });
};

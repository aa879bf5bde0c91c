import type { FileHandle } from 'node:fs/promises';
import { Readable } from 'node:stream';
import type { Metainfo } from '../metainfo';
import { pieceBounds } from '../metainfo';

/*
 * Reads of a blob file through one shared FileHandle: what the piece store and a complete
 * blob file (`p2p/swarm/filePieceSource.ts`) serve pieces with.
 */

/**
 * Where `[begin, begin + length)` of piece `index` lies in the blob (length defaults to the
 * rest of the piece), or undefined when that range is not inside the piece.
 */
export const pieceRange = (
  metainfo: Metainfo,
  index: number,
  begin = 0,
  length?: number,
): { start: number; length: number } | undefined => {
  const { start, end } = pieceBounds(metainfo, index);
  const size = end - start;
  const n = length ?? size - begin;
  if (!Number.isInteger(begin) || begin < 0 || n < 1 || begin + n > size) return undefined;
  return { start: start + begin, length: n };
};

/** `[start, start + length)` of the file in one buffer, or undefined when the file is shorter. */
export const readFully = async (
  file: FileHandle,
  start: number,
  length: number,
): Promise<Buffer | undefined> => {
  const buffer = Buffer.allocUnsafe(length);
  let filled = 0;
  while (filled < length) {
    const { bytesRead } = await file.read(buffer, filled, length - filled, start + filled);
    if (bytesRead === 0) return undefined;
    filled += bytesRead;
  }
  return buffer;
};

/**
 * A stream of `[start, start + length)` read through the FileHandle in 64 KiB chunks.
 * (`FileHandle.createReadStream` adds a 'close' listener to the handle per stream and never
 * removes it: a leak for a handle that serves thousands of pieces. A numeric fd is no better:
 * after the store closes it, the number may name another file.)
 */
export const readRange = (file: FileHandle, start: number, length: number): Readable => {
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
            this.destroy(new Error('the file is shorter than the blob'));
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

import { open } from 'node:fs/promises';
import type { Metainfo } from '../metainfo';
import { pieceBounds, pieceCountOf } from '../metainfo';
import { readvAll } from '../../kit/fs';
import { pieceRange, readFully, readRange } from '../pieces';
import type { PieceSource } from '../scheduler';
import { Bitfield } from '../wire';

/**
 * A complete blob file served piece by piece (an origin's stored blob, an agent's cached
 * blob): every piece present, reads through one FileHandle (the piece store's reads). The
 * file was verified against its digest when it was stored; this only checks its length.
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
  const readable = (index: number, begin: number, length: number | undefined) =>
    closed || index < 0 || index >= count ? undefined : pieceRange(metainfo, index, begin, length);
  return {
    pieceCount: count,
    complete: true,
    count,
    has: (index) => !closed && Number.isInteger(index) && index >= 0 && index < count,
    bitfield: () => Bitfield.full(count),
    pieceSize: (index) => {
      const { start, end } = pieceBounds(metainfo, index);
      return end - start;
    },
    createReadStream: (index, begin = 0, length) => {
      const range = readable(index, begin, length);
      return range === undefined ? undefined : readRange(file, range.start, range.length);
    },
    read: async (index, begin = 0, length) => {
      const range = readable(index, begin, length);
      if (range === undefined) return undefined;
      const buffer = await readFully(file, range.start, range.length);
      if (buffer === undefined) throw new Error('the blob file is shorter than its metainfo');
      return buffer;
    },
    readv: async (index, begin, targets) => {
      const length = targets.reduce((n, t) => n + t.length, 0);
      const range = length === 0 ? undefined : readable(index, begin, length);
      if (range === undefined) return false;
      if (!(await readvAll(file, targets, range.start))) {
        throw new Error('the blob file is shorter than its metainfo');
      }
      return true;
    },
    close: async () => {
      if (closed) return;
      closed = true;
      await file.close();
    },
  };
};

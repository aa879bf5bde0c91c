import { createHash, randomBytes } from 'node:crypto';
import { Readable } from 'node:stream';
import type { Result } from '../../domain';
import { fail, ok } from '../../domain';
import type { Metainfo } from '../../p2p/metainfo';
import { MetainfoBuilder, infoHash, pieceBounds } from '../../p2p/metainfo';
import type { FinalizeOutcome, PieceOutcome, PieceRefusal } from '../../p2p/pieces';
import { Bitfield } from '../../p2p/wire';
import type { PieceSink, PieceSource, PieceWriterLike } from '../../p2p/scheduler';
import { sha256 } from '../fixtures/blobs';

export type TestBlob = { data: Buffer; metainfo: Metainfo; infoHash: string };

/** Random bytes cut into pieces of `pieceLength`, with their metainfo. */
export const testBlob = (length: number, pieceLength: number): TestBlob => {
  const data = randomBytes(length);
  const metainfo = new MetainfoBuilder(pieceLength).update(data).digest();
  return { data, metainfo, infoHash: infoHash(metainfo) };
};

/**
 * A piece store in memory, for scheduler tests: the same contract as `PieceStore` (pieces
 * verified before they count, one writer per piece, whole digest checked by `finalize`).
 * `corrupt` makes a seeder serve wrong bytes (a lying peer); `has` starts it with pieces.
 */
export const memoryPieces = (
  blob: TestBlob,
  options: { has?: 'all' | readonly number[]; corrupt?: boolean } = {},
): PieceSink & { readonly data: Buffer; readonly stats: { stored: number; rejected: number } } => {
  const { metainfo } = blob;
  const count = metainfo.pieceHashes.length;
  const data = Buffer.alloc(metainfo.length);
  const present = new Bitfield(count);
  const writers = new Set<number>();
  const stats = { stored: 0, rejected: 0 };
  let complete = false;
  const have = options.has === 'all' ? [...Array(count).keys()] : (options.has ?? []);
  for (const index of have) {
    const { start, end } = pieceBounds(metainfo, index);
    blob.data.copy(data, start, start, end);
    present.set(index);
  }
  if (present.complete) complete = true;
  const size = (index: number) => {
    const { start, end } = pieceBounds(metainfo, index);
    return end - start;
  };

  const beginPiece = (index: number): Result<PieceWriterLike, PieceRefusal> => {
    if (complete || present.has(index)) return fail('present');
    if (writers.has(index)) return fail('busy');
    writers.add(index);
    const hash = createHash('sha256');
    const { start } = pieceBounds(metainfo, index);
    let received = 0;
    let aborted = false;
    let outcome: Promise<PieceOutcome> | undefined;
    return ok({
      write: (chunk) => {
        if (aborted || outcome !== undefined) return false;
        if (received + chunk.length <= size(index)) {
          data.set(chunk, start + received);
          hash.update(chunk);
        }
        received += chunk.length;
        return true;
      },
      drained: () => Promise.resolve(),
      abort: () => {
        aborted = true;
      },
      end: () =>
        (outcome ??= (async (): Promise<PieceOutcome> => {
          await Promise.resolve();
          writers.delete(index);
          if (aborted) return { kind: 'aborted' };
          if (received !== size(index)) {
            stats.rejected += 1;
            return { kind: 'bad-length', received };
          }
          if (hash.digest('hex') !== metainfo.pieceHashes[index]) {
            stats.rejected += 1;
            return { kind: 'bad-hash' };
          }
          present.set(index);
          stats.stored += 1;
          return { kind: 'stored' };
        })()),
    });
  };

  return {
    data,
    stats,
    pieceCount: count,
    get complete() {
      return complete;
    },
    get count() {
      return present.count;
    },
    get allPresent() {
      return present.complete;
    },
    has: (index) => present.has(index),
    bitfield: () => present.clone(),
    pieceSize: size,
    createReadStream: (index, begin = 0, length) => {
      if (!present.has(index)) return undefined;
      const { start } = pieceBounds(metainfo, index);
      const n = length ?? size(index) - begin;
      const bytes = Buffer.from(data.subarray(start + begin, start + begin + n));
      if (options.corrupt)
        for (let i = 0; i < bytes.length; i += 4096) bytes[i] = ~(bytes[i] ?? 0) & 0xff;
      const chunks: Buffer[] = [];
      for (let at = 0; at < bytes.length; at += 64 * 1024) {
        chunks.push(bytes.subarray(at, at + 64 * 1024));
      }
      return Readable.from(chunks);
    },
    beginPiece,
    finalize: async (): Promise<FinalizeOutcome> => {
      if (!present.complete) return { kind: 'incomplete', missing: count - present.count };
      const digest = sha256(data);
      if (digest !== metainfo.digest) return { kind: 'corrupt', badPieces: [] };
      complete = true;
      return { kind: 'complete', path: ':memory:' };
    },
  };
};

/** A read-only source (what an origin serves from). */
export const memorySource = (blob: TestBlob): PieceSource => memoryPieces(blob, { has: 'all' });

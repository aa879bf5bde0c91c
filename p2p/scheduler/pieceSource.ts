import type { Readable } from 'node:stream';
import type { Result } from '../../domain';
import type { FinalizeOutcome, PieceOutcome, PieceRefusal } from '../pieces';
import type { Bitfield } from '../wire';

/** What a scheduler serves pieces from: a complete blob file or a piece store. */
export interface PieceSource {
  readonly pieceCount: number;
  /** Whether the whole blob is present and verified. */
  readonly complete: boolean;
  /** Pieces present. */
  readonly count: number;
  has(index: number): boolean;
  bitfield(): Bitfield;
  pieceSize(index: number): number;
  /** A present piece's bytes `[begin, begin + length)`, or undefined. */
  createReadStream(index: number, begin?: number, length?: number): Readable | undefined;
  /**
   * The same bytes in one buffer (one read, one allocation): what uploads of small pieces
   * use when the source offers it.
   */
  read?(index: number, begin?: number, length?: number): Promise<Buffer | undefined>;
}

/** One piece being written: chunks in order, then `end` verifies it. */
export interface PieceWriterLike {
  write(chunk: Uint8Array): boolean;
  /** Several chunks in order, written together (no copy into one buffer); as `write`. */
  writeAll?(chunks: readonly Uint8Array[]): boolean;
  drained(): Promise<void>;
  abort(): void;
  end(): Promise<PieceOutcome>;
}

/** What a downloading scheduler writes into (a `PieceStore` is one). */
export interface PieceSink extends PieceSource {
  readonly allPresent: boolean;
  beginPiece(index: number): Result<PieceWriterLike, PieceRefusal>;
  finalize(): Promise<FinalizeOutcome>;
}

export const isPieceSink = (source: PieceSource | PieceSink): source is PieceSink =>
  typeof (source as Partial<PieceSink>).beginPiece === 'function';

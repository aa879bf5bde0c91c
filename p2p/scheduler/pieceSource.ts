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
  /**
   * The present pieces themselves, not a copy: read at once, never kept or changed (the
   * scheduler asks on every request it makes; {@link bitfield} copies).
   */
  bitfieldView?(): Bitfield;
  pieceSize(index: number): number;
  /** A present piece's bytes `[begin, begin + length)`, or undefined. */
  createReadStream(index: number, begin?: number, length?: number): Readable | undefined;
  /**
   * The same bytes in one buffer (one read, one allocation): what uploads of small pieces
   * use when the source offers it.
   */
  read?(index: number, begin?: number, length?: number): Promise<Buffer | undefined>;
  /**
   * Reads a present piece's bytes from `begin` into `targets`, in order, one after another
   * (one `readv`): how uploads fill pooled frame buffers. Resolves false when the range is
   * not present or not inside the piece; rejects on an I/O error.
   */
  readv?(index: number, begin: number, targets: readonly Buffer[]): Promise<boolean>;
}

/** One piece being written: chunks in order, then `end` verifies it. */
export interface PieceWriterLike {
  /**
   * The next bytes of the piece, copied before it returns (the caller's buffer is reused);
   * false: wait for `drained` before giving more.
   */
  write(chunk: Uint8Array): boolean;
  /** Several chunks in order; as `write`. */
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

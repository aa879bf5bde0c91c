import { Readable } from 'node:stream';
import type { Result } from '../../domain';
import { fail, ok } from '../../domain';
import type { FinalizeOutcome, PieceOutcome, PieceRefusal } from '../../p2p/pieces';
import type { PieceSink, PieceWriterLike } from '../../p2p/scheduler';
import { Bitfield } from '../../p2p/wire';

/** Stands for a piece's bytes: the simulated connection sends sizes, never reads it. */
const noBytes = new Readable({ read() {} });
const empty = Buffer.alloc(0);

/**
 * A blob's pieces without their bytes: which pieces are present, writers that store a piece
 * when it ends, and the whole-blob check at the end taking `finalizeMs` (the agent re-reads
 * and hashes the blob: length ÷ hash rate). Implements the scheduler's PieceSink.
 */
export class SimPieces implements PieceSink {
  readonly pieceCount: number;
  private readonly length: number;
  private readonly pieceLength: number;
  private readonly present: Bitfield;
  private readonly writing = new Set<number>();
  private readonly finalizeMs: number;
  private readonly wait: (ms: number) => Promise<void>;
  private verified: boolean;

  constructor(options: {
    length: number;
    pieceLength: number;
    complete?: boolean;
    /** Pieces kept from an earlier run (a restarted agent resumes). */
    present?: Bitfield;
    finalizeMs?: number;
    wait: (ms: number) => Promise<void>;
  }) {
    this.length = options.length;
    this.pieceLength = options.pieceLength;
    this.pieceCount = Math.ceil(options.length / options.pieceLength);
    this.present = options.complete
      ? Bitfield.full(this.pieceCount)
      : (options.present?.clone() ?? new Bitfield(this.pieceCount));
    this.verified = options.complete === true;
    this.finalizeMs = options.finalizeMs ?? 0;
    this.wait = options.wait;
  }

  get complete(): boolean {
    return this.verified;
  }

  get count(): number {
    return this.present.count;
  }

  get allPresent(): boolean {
    return this.present.complete;
  }

  /** The pieces present (a copy). */
  get pieces(): Bitfield {
    return this.present.clone();
  }

  has(index: number): boolean {
    return this.present.has(index);
  }

  bitfield(): Bitfield {
    return this.present.clone();
  }

  bitfieldView(): Bitfield {
    return this.present;
  }

  pieceSize(index: number): number {
    return Math.min(this.pieceLength, this.length - index * this.pieceLength);
  }

  createReadStream(index: number): Readable | undefined {
    return this.present.has(index) ? noBytes : undefined;
  }

  read(index: number): Promise<Buffer | undefined> {
    return Promise.resolve(this.present.has(index) ? empty : undefined);
  }

  beginPiece(index: number): Result<PieceWriterLike, PieceRefusal> {
    if (index < 0 || index >= this.pieceCount) return fail('out-of-range');
    if (this.present.has(index)) return fail('present');
    if (this.writing.has(index)) return fail('busy');
    this.writing.add(index);
    let aborted = false;
    let outcome: Promise<PieceOutcome> | undefined;
    return ok({
      write: () => true,
      writeAll: () => true,
      drained: () => Promise.resolve(),
      abort: () => {
        aborted = true;
      },
      end: () =>
        (outcome ??= Promise.resolve().then((): PieceOutcome => {
          this.writing.delete(index);
          if (aborted) return { kind: 'aborted' };
          this.present.set(index);
          return { kind: 'stored' };
        })),
    });
  }

  async finalize(): Promise<FinalizeOutcome> {
    if (this.verified) return { kind: 'complete', path: '' };
    if (!this.present.complete) {
      return { kind: 'incomplete', missing: this.pieceCount - this.present.count };
    }
    if (this.finalizeMs > 0) await this.wait(this.finalizeMs);
    this.verified = true;
    return { kind: 'complete', path: '' };
  }
}

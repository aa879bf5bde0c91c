import type { Hash } from 'node:crypto';
import { createHash } from 'node:crypto';
import type { Metainfo } from './metainfo';

export type BuiltBlob = {
  /** `sha256:<hex>` of every byte given to `update`. */
  readonly digest: string;
  readonly length: number;
  /** The metainfo, unless piece hashing was dropped. */
  readonly metainfo: Metainfo | undefined;
};

/**
 * Computes, in one pass over a stream of chunks, the whole blob's SHA-256 and the SHA-256 of
 * each piece. Holds one hash state per kind, never the bytes. Use it where a blob streams in
 * (upload, replica, backend fill) so no second read is needed.
 */
export class MetainfoBuilder {
  readonly pieceLength: number;
  private readonly whole: Hash = createHash('sha256');
  private piece: Hash | undefined;
  private pieceFill = 0;
  private readonly hashes: string[] = [];
  private piecesDropped = false;
  private total = 0;
  private result: BuiltBlob | undefined;

  constructor(pieceLength: number) {
    if (!Number.isSafeInteger(pieceLength) || pieceLength <= 0) {
      throw new RangeError(`piece length must be a positive integer, got ${pieceLength}`);
    }
    this.pieceLength = pieceLength;
  }

  /** Bytes seen so far. */
  get length(): number {
    return this.total;
  }

  /** Whether piece hashes are still being computed. */
  get hasPieces(): boolean {
    return !this.piecesDropped;
  }

  update(chunk: Uint8Array): this {
    if (this.result !== undefined) throw new Error('MetainfoBuilder: update after digest');
    this.whole.update(chunk);
    this.total += chunk.length;
    if (this.piecesDropped) return this;
    let offset = 0;
    while (offset < chunk.length) {
      this.piece ??= createHash('sha256');
      const take = Math.min(this.pieceLength - this.pieceFill, chunk.length - offset);
      this.piece.update(chunk.subarray(offset, offset + take));
      this.pieceFill += take;
      offset += take;
      if (this.pieceFill === this.pieceLength) this.closePiece();
    }
    return this;
  }

  /**
   * Stops hashing pieces; the whole-blob digest goes on. For a stream whose final size, still
   * unknown, may call for a longer piece than this builder's (its metainfo is made later).
   */
  dropPieces(): void {
    this.piecesDropped = true;
    this.piece = undefined;
    this.hashes.length = 0;
  }

  /** `sha256:<hex>` of the bytes so far, without finishing: updates may follow. */
  currentDigest(): string {
    if (this.result !== undefined) return this.result.digest;
    return `sha256:${this.whole.copy().digest('hex')}`;
  }

  /** Finishes (once; later calls return the same result). */
  finish(): BuiltBlob {
    if (this.result === undefined) {
      if (this.pieceFill > 0) this.closePiece();
      const digest = `sha256:${this.whole.digest('hex')}`;
      this.result = {
        digest,
        length: this.total,
        metainfo: this.piecesDropped
          ? undefined
          : {
              digest,
              length: this.total,
              pieceLength: this.pieceLength,
              pieceHashes: [...this.hashes],
            },
      };
    }
    return this.result;
  }

  /** The metainfo; throws when piece hashing was dropped. */
  digest(): Metainfo {
    const { metainfo } = this.finish();
    if (metainfo === undefined) throw new Error('MetainfoBuilder: piece hashes were dropped');
    return metainfo;
  }

  private closePiece(): void {
    this.hashes.push((this.piece ?? createHash('sha256')).digest('hex'));
    this.piece = undefined;
    this.pieceFill = 0;
  }
}

/** Builds the metainfo of a whole stream, with the piece length its size calls for. */
export const metainfoOf = async (
  source: AsyncIterable<Uint8Array>,
  pieceLength: number,
): Promise<BuiltBlob> => {
  const builder = new MetainfoBuilder(pieceLength);
  for await (const chunk of source) builder.update(chunk);
  return builder.finish();
};

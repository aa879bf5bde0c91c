/**
 * Which pieces a peer has, in the wire's layout: ⌈length / 8⌉ bytes, piece `i` in byte
 * `i >> 3` at bit `0x80 >> (i & 7)` (most significant bit first, as in BitTorrent); the
 * spare bits of the last byte are zero.
 */
export class Bitfield {
  readonly length: number;
  private readonly bytes: Uint8Array;
  private set_ = 0;

  constructor(length: number, bytes?: Uint8Array) {
    if (!Number.isSafeInteger(length) || length < 0) {
      throw new RangeError(`bitfield length must be a non-negative integer, got ${length}`);
    }
    this.length = length;
    this.bytes = new Uint8Array(Bitfield.byteLengthOf(length));
    if (bytes !== undefined) {
      if (bytes.length !== this.bytes.length || !Bitfield.spareBitsClear(length, bytes)) {
        throw new RangeError('bitfield bytes do not fit the length');
      }
      this.bytes.set(bytes);
      for (const byte of this.bytes) this.set_ += popcount(byte);
    }
  }

  static byteLengthOf(length: number): number {
    return Math.ceil(length / 8);
  }

  /** Whether the bits after `length` in the last byte are zero. */
  static spareBitsClear(length: number, bytes: Uint8Array): boolean {
    const spare = bytes.length * 8 - length;
    if (spare <= 0) return true;
    const last = bytes[bytes.length - 1] ?? 0;
    return (last & ((1 << spare) - 1)) === 0;
  }

  static full(length: number): Bitfield {
    const field = new Bitfield(length);
    field.setAll();
    return field;
  }

  /** Number of pieces set. */
  get count(): number {
    return this.set_;
  }

  get complete(): boolean {
    return this.set_ === this.length;
  }

  has(index: number): boolean {
    if (!this.inRange(index)) return false;
    return ((this.bytes[index >> 3] ?? 0) & (0x80 >> (index & 7))) !== 0;
  }

  /** Sets a bit; returns whether it was clear before. */
  set(index: number): boolean {
    if (!this.inRange(index)) throw new RangeError(`piece index ${index} out of range`);
    const mask = 0x80 >> (index & 7);
    const byte = this.bytes[index >> 3] ?? 0;
    if ((byte & mask) !== 0) return false;
    this.bytes[index >> 3] = byte | mask;
    this.set_ += 1;
    return true;
  }

  /** Clears a bit; returns whether it was set before. */
  clear(index: number): boolean {
    if (!this.inRange(index)) throw new RangeError(`piece index ${index} out of range`);
    const mask = 0x80 >> (index & 7);
    const byte = this.bytes[index >> 3] ?? 0;
    if ((byte & mask) === 0) return false;
    this.bytes[index >> 3] = byte & ~mask;
    this.set_ -= 1;
    return true;
  }

  setAll(): void {
    this.bytes.fill(0xff);
    const spare = this.bytes.length * 8 - this.length;
    if (spare > 0) this.bytes[this.bytes.length - 1] = (0xff << spare) & 0xff;
    this.set_ = this.length;
  }

  /** Indices of set bits, in order. */
  *indices(): IterableIterator<number> {
    for (let i = 0; i < this.length; i += 1) if (this.has(i)) yield i;
  }

  /**
   * Indices set here and clear in `other` (a bitfield of the same length), ascending: the
   * pieces a peer has that we lack. Byte at a time, so a sparse difference costs little.
   * `into`, when given, is emptied and filled instead of a new array (a caller on a hot path
   * reuses one).
   */
  missingFrom(other: Bitfield, into?: number[]): number[] {
    if (other.length !== this.length) throw new RangeError('bitfields differ in length');
    const out: number[] = into ?? [];
    out.length = 0;
    const mine = this.bytes;
    const theirs = other.bytes;
    for (let b = 0; b < mine.length; b += 1) {
      let bits = (mine[b] as number) & ~(theirs[b] as number) & 0xff;
      while (bits !== 0) {
        // Most significant bit first, i.e. ascending: piece 8b + (7 − position).
        const position = 31 - Math.clz32(bits);
        out.push(b * 8 + (7 - position));
        bits &= ~(1 << position);
      }
    }
    return out;
  }

  /** A copy of the bytes, in wire layout. */
  toBuffer(): Buffer {
    return Buffer.from(this.bytes);
  }

  /** A copy (the bytes copied as they are: no validation, no recount). */
  clone(): Bitfield {
    const copy = new Bitfield(this.length);
    copy.bytes.set(this.bytes);
    copy.set_ = this.set_;
    return copy;
  }

  private inRange(index: number): boolean {
    return Number.isInteger(index) && index >= 0 && index < this.length;
  }
}

const popcount = (byte: number): number => {
  let n = byte;
  let count = 0;
  while (n !== 0) {
    n &= n - 1;
    count += 1;
  }
  return count;
};

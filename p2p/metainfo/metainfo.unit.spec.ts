import { randomBytes } from 'node:crypto';
import type { Metainfo } from './metainfo';
import {
  canonicalMetainfo,
  decodeMetainfo,
  encodeMetainfo,
  infoHash,
  maxPieceLength,
  minPieceLength,
  pieceBounds,
  pieceCountOf,
  pieceLengthFor,
  targetPieceCount,
} from './metainfo';
import { MetainfoBuilder, metainfoOf } from './metainfoBuilder';
import { sha256 } from '../../test/fixtures/blobs';

const KiB = 1024;
const MiB = 1024 * KiB;
const GiB = 1024 * MiB;

// Golden values computed independently (Python hashlib) for 1024 bytes 0x00..0xff ×4 in
// 300-byte pieces.
const goldenData = Buffer.from(Array.from({ length: 1024 }, (_, i) => i % 256));
const golden: Metainfo = {
  digest: 'sha256:785b0751fc2c53dc14a4ce3d800e69ef9ce1009eb327ccf458afe09c242c26c9',
  length: 1024,
  pieceLength: 300,
  pieceHashes: [
    '7728ae2f2c36e2aaafbe79ca14c87ae2f89e7c88c4390ecbbf82dce88706958d',
    'f63e3f2f2c7580c510df017ef273d8d53610f34ef15acef792d115d7b2a54f27',
    'd312a43a6721875e1aeb4511a03825323f30253d730547477926e309983b6107',
    '114176ef50fa1e456263cf4951fdc4d29c0af242a4d5f5cd90729a8efbbbec6f',
  ],
};
const goldenInfoHash = 'bf63590bcb6e9cf56fd79c63c467a7958d6ca9ba453737eda0b082b28c30a46b';

describe('piece length', () => {
  it('grows with the size in powers of two, within bounds', () => {
    expect(pieceLengthFor(0)).toBe(256 * KiB);
    expect(pieceLengthFor(1)).toBe(256 * KiB);
    expect(pieceLengthFor(64 * MiB)).toBe(256 * KiB);
    expect(pieceLengthFor(512 * MiB)).toBe(256 * KiB);
    expect(pieceLengthFor(512 * MiB + 1)).toBe(512 * KiB);
    expect(pieceLengthFor(GiB)).toBe(512 * KiB);
    expect(pieceLengthFor(1.5 * GiB)).toBe(MiB);
    expect(pieceLengthFor(4 * GiB)).toBe(2 * MiB);
    expect(pieceLengthFor(20 * GiB)).toBe(16 * MiB);
    expect(pieceLengthFor(1024 * GiB)).toBe(maxPieceLength);
  });

  it('bounds the piece count up to 32 GiB', () => {
    for (let size = 1; size <= 32 * GiB; size = Math.ceil(size * 1.37)) {
      const length = pieceLengthFor(size);
      expect(length).toBeGreaterThanOrEqual(minPieceLength);
      expect(pieceCountOf(size, length)).toBeLessThanOrEqual(targetPieceCount);
    }
  });

  it('gives piece bounds with a shorter last piece', () => {
    expect(pieceBounds(golden, 0)).toEqual({ start: 0, end: 300 });
    expect(pieceBounds(golden, 3)).toEqual({ start: 900, end: 1024 });
  });
});

describe('MetainfoBuilder', () => {
  it('computes the golden digest and piece hashes', () => {
    const builder = new MetainfoBuilder(300);
    builder.update(goldenData);
    expect(builder.digest()).toEqual(golden);
  });

  it('gives the same result whatever the chunking', () => {
    const data = randomBytes(10_000);
    const whole = new MetainfoBuilder(1000).update(data).digest();
    for (const chunk of [1, 7, 999, 1000, 1001, 4096]) {
      const builder = new MetainfoBuilder(1000);
      for (let i = 0; i < data.length; i += chunk) builder.update(data.subarray(i, i + chunk));
      expect(builder.digest()).toEqual(whole);
    }
    expect(whole.pieceHashes).toHaveLength(10);
    expect(whole.digest).toBe(sha256(data));
  });

  it('handles the empty blob and an exact multiple of the piece length', () => {
    expect(new MetainfoBuilder(4).digest()).toEqual({
      digest: 'sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855',
      length: 0,
      pieceLength: 4,
      pieceHashes: [],
    });
    expect(new MetainfoBuilder(4).update(Buffer.alloc(8)).digest().pieceHashes).toHaveLength(2);
  });

  it('keeps the whole digest after dropping piece hashes', () => {
    const data = randomBytes(5000);
    const builder = new MetainfoBuilder(100).update(data.subarray(0, 2500));
    builder.dropPieces();
    builder.update(data.subarray(2500));
    const built = builder.finish();
    expect(built.metainfo).toBeUndefined();
    expect(built.length).toBe(5000);
    expect(built.digest).toBe(sha256(data));
    expect(() => builder.digest()).toThrow('dropped');
  });

  it('builds from a stream', async () => {
    const built = await metainfoOf(
      (async function* () {
        yield goldenData.subarray(0, 10);
        yield goldenData.subarray(10);
      })(),
      300,
    );
    expect(built.metainfo).toEqual(golden);
  });
});

describe('info hash and codec', () => {
  it('hashes the canonical bencoding (golden values)', () => {
    expect(infoHash(golden)).toBe(goldenInfoHash);
    const empty = new MetainfoBuilder(256 * KiB).digest();
    expect(canonicalMetainfo(empty).toString()).toBe(
      'd6:digest71:sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855' +
        '6:lengthi0e11:pieceHashesle11:pieceLengthi262144ee',
    );
    expect(infoHash(empty)).toBe(
      '92a27d12e7380a2bd5a9fdf1e77d7d02fb58d8f054dfd99e8e561b889f4851b4',
    );
  });

  it('round-trips through JSON and keeps the info hash', () => {
    const text = encodeMetainfo(golden);
    const decoded = decodeMetainfo(text);
    expect(decoded).toEqual({ ok: true, value: golden });
    if (decoded.ok) expect(infoHash(decoded.value)).toBe(goldenInfoHash);
  });

  it('refuses malformed metainfo', () => {
    const bad = [
      'not json',
      JSON.stringify({ ...golden, pieceHashes: golden.pieceHashes.slice(1) }),
      JSON.stringify({ ...golden, digest: 'md5:abc' }),
      JSON.stringify({ ...golden, pieceLength: 0 }),
      JSON.stringify({ ...golden, pieceHashes: ['XYZ', 'a', 'b', 'c'] }),
      JSON.stringify({ ...golden, extra: 1 }),
    ];
    for (const text of bad) {
      const result = decodeMetainfo(text);
      expect(result.ok).toBe(false);
      if (!result.ok) expect(result.error.code).toBe('PARAMETER_INVALID');
    }
  });
});

import type { Message } from './codec';
import { encodeHandshake, encodeMessage } from './codec';
import { goldenFrames } from '../../test/fixtures/goldenFrames';
import { maxBlockLength } from './constants';
import type { ControlMessage, PieceFrame } from './framer';
import { Framer } from './framer';
import type { Violation } from './violations';

/** Small seeded PRNG (mulberry32): failures reproduce from the seed in the test name. */
const prng = (seed: number) => () => {
  seed = (seed + 0x6d2b79f5) | 0;
  let t = seed;
  t = Math.imul(t ^ (t >>> 15), t | 1);
  t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
  return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
};

type Seen = {
  messages: Message[];
  violations: Violation[];
  /** Every part of every piece frame, its chunks copied (they are only valid in the call). */
  pieces: PieceFrame[];
  /** Messages handed over before the violation. */
  beforeViolation: number;
};

/** Pieces compared by their payload's hex: deep equality on big Buffers is slow in Jest. */
const summary = (message: Message): Message =>
  message.type === 'piece'
    ? ({ ...message, data: message.data.toString('hex') } as unknown as Message)
    : message;

const collect = (options?: { expectHandshake?: boolean }) => {
  const seen: Seen = { messages: [], violations: [], pieces: [], beforeViolation: -1 };
  const parts: Buffer[] = [];
  const framer = new Framer(
    {
      message: (message: ControlMessage) => seen.messages.push(message),
      piece: (frame) => {
        const copy = { ...frame, chunks: frame.chunks.map((c) => Buffer.from(c)) };
        seen.pieces.push(copy);
        // A frame's payload comes in parts: one message per frame, once it is all in.
        parts.push(...copy.chunks);
        if (frame.offset + frame.length < frame.frameLength) return;
        seen.messages.push(
          summary({
            type: 'piece',
            index: frame.index,
            begin: frame.begin + frame.length - frame.frameLength,
            data: Buffer.concat(parts.splice(0)),
          }),
        );
      },
      violation: (violation) => {
        seen.violations.push(violation);
        seen.beforeViolation = seen.messages.length;
      },
    },
    options,
  );
  return { framer, seen };
};

/** Feeds `bytes` in pieces cut at random points (including empty and one-byte pieces). */
const feedSplit = (framer: Framer, bytes: Buffer, random: () => number, maxCut = 64) => {
  let at = 0;
  while (at < bytes.length) {
    const n = Math.floor(random() * (random() < 0.1 ? bytes.length : maxCut));
    framer.push(bytes.subarray(at, at + n));
    at += n;
  }
};

// A valid stream: the handshake first, then every other golden frame, then a big piece.
const golden = goldenFrames.filter((g, i) => i === 0 || g.message.type !== 'handshake');
const bigPiece: Message = {
  type: 'piece',
  index: 3,
  begin: 0,
  data: Buffer.alloc(maxBlockLength, 7),
};
const stream = Buffer.concat([
  ...golden.map((g) => Buffer.from(g.hex, 'hex')),
  encodeMessage(bigPiece),
]);
const expected = [...golden.map((g) => g.message), bigPiece].map(summary);

describe('Framer', () => {
  it('parses a stream of every message fed at once', () => {
    const { framer, seen } = collect();
    framer.push(stream);
    expect(seen.violations).toEqual([]);
    expect(seen.messages).toEqual(expected);
    expect(framer.bufferedBytes).toBe(0);
  });

  it.each([1, 2, 3, 4, 5, 6, 7, 8])('parses the same stream at random splits (seed %i)', (seed) => {
    const { framer, seen } = collect();
    feedSplit(framer, stream, prng(seed), seed * 97);
    expect(seen.violations).toEqual([]);
    expect(seen.messages).toEqual(expected);
  });

  it('parses one byte at a time', () => {
    const { framer, seen } = collect();
    for (let i = 0; i < stream.length - bigPiece.data.length; i += 1) {
      framer.push(stream.subarray(i, i + 1));
    }
    framer.push(stream.subarray(stream.length - bigPiece.data.length));
    expect(seen.messages).toEqual(expected);
  });

  it('hands over piece payloads in parts as they arrive, as views of the received buffer', () => {
    const owners: ArrayBufferLike[] = [];
    const parts: Array<{ offset: number; length: number; frameLength: number }> = [];
    const framer = new Framer({
      message: () => undefined,
      piece: (frame) => {
        owners.push(...frame.chunks.map((c) => c.buffer));
        parts.push({ offset: frame.offset, length: frame.length, frameLength: frame.frameLength });
      },
      violation: () => undefined,
    });
    const input = Buffer.from(stream); // its own ArrayBuffer
    framer.push(input.subarray(0, input.length - 1000));
    framer.push(input.subarray(input.length - 1000));
    const last = parts.slice(-2);
    expect(last).toEqual([
      { offset: 0, length: maxBlockLength - 1000, frameLength: maxBlockLength },
      { offset: maxBlockLength - 1000, length: 1000, frameLength: maxBlockLength },
    ]);
    for (const owner of owners) expect(owner).toBe(input.buffer);
    expect(framer.bufferedBytes).toBe(0);
  });

  it('keeps nothing of a chunk: the caller may overwrite it once push returns', () => {
    const { framer, seen } = collect();
    const reused = Buffer.alloc(97);
    for (let at = 0; at < stream.length; at += reused.length) {
      const n = stream.copy(reused, 0, at, at + reused.length);
      framer.push(reused.subarray(0, n));
      reused.fill(0xee);
    }
    expect(seen.violations).toEqual([]);
    expect(seen.messages).toEqual(expected);
  });

  it('reports an oversize frame from its header, without buffering the body', () => {
    const { framer, seen } = collect({ expectHandshake: false });
    framer.push(Buffer.from('7fffffff03', 'hex'));
    expect(seen.violations.map((v) => v.kind)).toEqual(['oversize-frame']);
    expect(framer.stopped).toBe(true);
    framer.push(Buffer.alloc(1000));
    expect(seen.violations).toHaveLength(1);
    expect(framer.bufferedBytes).toBe(0);
  });

  it('takes a stream that does not start with a handshake for another protocol', () => {
    for (const text of ['GET / HTTP/1.1\r\n\r\n', '\x13BitTorrent protocol']) {
      const { framer, seen } = collect();
      framer.push(Buffer.from(text, 'latin1'));
      expect(seen.violations.map((v) => v.kind)).toEqual(['bad-magic']);
    }
    const { framer, seen } = collect();
    framer.push(Buffer.from('000000050100000001', 'hex')); // a have first
    expect(seen.violations.map((v) => v.kind)).toEqual(['bad-magic']);
  });

  it('refuses a second handshake', () => {
    const { framer, seen } = collect();
    const hs = Buffer.from(golden[0]?.hex ?? '', 'hex');
    framer.push(Buffer.concat([hs, hs]));
    expect(seen.messages).toHaveLength(1);
    expect(seen.violations.map((v) => v.kind)).toEqual(['unexpected-handshake']);
  });

  it('stops at once when a handler stops it', () => {
    const seen: string[] = [];
    const framer: Framer = new Framer(
      {
        message: (m) => {
          seen.push(m.type);
          framer.stop();
        },
        piece: () => seen.push('piece'),
        violation: () => seen.push('violation'),
      },
      { expectHandshake: false },
    );
    framer.push(Buffer.from('00000001070000000107', 'hex'));
    expect(seen).toEqual(['keepalive']);
  });

  it.each([11, 12, 13, 14, 15, 16])(
    'never throws on random bytes; reports at most one violation, then nothing (seed %i)',
    (seed) => {
      const random = prng(seed);
      for (let round = 0; round < 200; round += 1) {
        const { framer, seen } = collect({ expectHandshake: random() < 0.5 });
        const bytes = Buffer.alloc(Math.floor(random() * 300));
        for (let i = 0; i < bytes.length; i += 1) bytes[i] = Math.floor(random() * 256);
        // Make plausible headers common, so the fuzz reaches message bodies.
        if (bytes.length > 5 && random() < 0.7) {
          bytes.writeUInt32BE(Math.floor(random() * 40), 0);
          bytes[4] = Math.floor(random() * 9);
        }
        expect(() => feedSplit(framer, bytes, random, 16)).not.toThrow();
        framer.push(Buffer.from(golden[2]?.hex ?? '', 'hex'));
        expect(seen.violations.length).toBeLessThanOrEqual(1);
        if (seen.violations.length === 1) expect(seen.messages).toHaveLength(seen.beforeViolation);
      }
    },
  );

  it.each([21, 22, 23, 24])(
    'never throws on a valid stream with random bytes flipped (seed %i)',
    (seed) => {
      const random = prng(seed);
      const base = Buffer.concat([
        encodeHandshake({
          version: 1,
          flags: 0,
          infoHash: Buffer.alloc(32),
          peerId: Buffer.alloc(20),
          pieceCount: 20,
          bitfield: Buffer.from('fffff0', 'hex'),
        }),
        ...golden.slice(1).map((g) => Buffer.from(g.hex, 'hex')),
      ]);
      for (let round = 0; round < 300; round += 1) {
        const bytes = Buffer.from(base);
        const flips = 1 + Math.floor(random() * 3);
        for (let i = 0; i < flips; i += 1) {
          bytes[Math.floor(random() * bytes.length)] = Math.floor(random() * 256);
        }
        const { framer, seen } = collect();
        expect(() => feedSplit(framer, bytes, random, 32)).not.toThrow();
        expect(seen.violations.length).toBeLessThanOrEqual(1);
      }
    },
  );
});

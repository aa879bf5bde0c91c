import { Bitfield } from './bitfield';
import {
  checkFrameHeader,
  decodeFrame,
  encodeError,
  encodeHandshake,
  encodeHave,
  encodeMessage,
  encodePieceHeader,
  encodeRequest,
} from './codec';
import { goldenFrames } from '../../test/fixtures/goldenFrames';
import {
  maxBlockLength,
  maxErrorMessageLength,
  maxFrameLength,
  maxHandshakeFrameLength,
  maxPieceCount,
  messageIds,
} from './constants';

const frameOf = (hex: string) => Buffer.from(hex, 'hex');
const handshake = {
  version: 1,
  flags: 0,
  infoHash: Buffer.alloc(32, 1),
  peerId: Buffer.alloc(20, 2),
  pieceCount: 10,
  bitfield: Buffer.from('a040', 'hex'),
};

/** Rewrites the length field after editing a frame by hand. */
const withLength = (frame: Buffer): Buffer => {
  frame.writeUInt32BE(frame.length - 4, 0);
  return frame;
};

describe('codec golden frames', () => {
  it.each(goldenFrames.map((g) => [g.name, g] as const))('encodes %s', (_name, golden) => {
    expect(encodeMessage(golden.message).toString('hex')).toBe(golden.hex);
  });

  it.each(goldenFrames.map((g) => [g.name, g] as const))('decodes %s', (_name, golden) => {
    expect(decodeFrame(frameOf(golden.hex))).toEqual({ ok: true, value: golden.message });
  });
});

describe('codec violations', () => {
  const kindOf = (frame: Buffer) => {
    const decoded = decodeFrame(frame);
    return decoded.ok ? 'ok' : decoded.error.kind;
  };

  it('refuses a handshake with another protocol string', () => {
    const frame = encodeHandshake(handshake);
    frame.write('BitTorrent', 6, 'ascii');
    expect(kindOf(frame)).toBe('bad-magic');
  });

  it('refuses peer ids outside 20..32 bytes', () => {
    const frame = encodeHandshake(handshake);
    frame.writeUInt8(19, 49);
    expect(kindOf(frame)).toBe('bad-handshake');
    expect(() => encodeHandshake({ ...handshake, peerId: Buffer.alloc(33) })).toThrow(RangeError);
  });

  it('refuses bits past the piece count', () => {
    const frame = encodeHandshake(handshake);
    frame.writeUInt8(0x60, frame.length - 1); // piece 9 and the spare piece 10
    expect(kindOf(frame)).toBe('bitfield-spare-bits');
  });

  it('refuses a bitfield whose length does not fit the piece count', () => {
    const short = withLength(encodeHandshake(handshake).subarray(0, -1));
    expect(kindOf(Buffer.from(short))).toBe('bad-handshake');
    const frame = encodeHandshake(handshake);
    frame.writeUInt32BE(maxPieceCount + 1, 70);
    expect(kindOf(frame)).toBe('bad-handshake');
  });

  it('refuses oversize frames by their header alone', () => {
    expect(checkFrameHeader(maxFrameLength + 1, messageIds.piece)).toMatchObject({
      ok: false,
      error: { kind: 'oversize-frame' },
    });
    expect(checkFrameHeader(10 + maxBlockLength, messageIds.piece)).toMatchObject({
      ok: false,
      error: { kind: 'oversize-frame' },
    });
    expect(checkFrameHeader(maxHandshakeFrameLength + 1, messageIds.handshake)).toMatchObject({
      ok: false,
      error: { kind: 'oversize-frame' },
    });
    expect(checkFrameHeader(9 + maxBlockLength, messageIds.piece)).toEqual({
      ok: true,
      value: 'piece',
    });
  });

  it('refuses unknown ids and lengths a message cannot have', () => {
    expect(kindOf(frameOf('0000000108'))).toBe('unknown-message');
    expect(kindOf(frameOf('000000060100000001ff'))).toBe('oversize-frame');
    expect(kindOf(frameOf('0000000401000000'))).toBe('bad-length');
    expect(kindOf(frameOf('0000000903000000010000000'.padEnd(26, '0')))).toBe('bad-length');
    expect(kindOf(frameOf('00000000'.concat('07')))).toBe('bad-length');
  });

  it('checks that the frame holds exactly its length', () => {
    expect(kindOf(Buffer.concat([encodeHave(1), Buffer.from([0])]))).toBe('bad-length');
  });
});

describe('codec encoders', () => {
  it('refuses values that do not fit their fields', () => {
    expect(() => encodeHave(-1)).toThrow(RangeError);
    expect(() => encodeRequest(1, 0, 2 ** 32)).toThrow(RangeError);
    expect(() => encodePieceHeader(1, 0, 0)).toThrow(RangeError);
    expect(() => encodePieceHeader(1, 0, maxBlockLength + 1)).toThrow(RangeError);
    expect(() => encodeHandshake({ ...handshake, pieceCount: 17 })).toThrow(RangeError);
    expect(() => encodeHandshake({ ...handshake, infoHash: Buffer.alloc(20) })).toThrow(RangeError);
  });

  it('cuts long error texts at a character boundary', () => {
    const text = 'é'.repeat(maxErrorMessageLength); // 2 bytes each
    const frame = encodeError({ code: 16, index: 0xffffffff, begin: 0, length: 0, message: text });
    const decoded = decodeFrame(frame);
    expect(decoded.ok && decoded.value.type === 'error' && decoded.value.message).toBe(
      'é'.repeat(maxErrorMessageLength / 2),
    );
    const odd = encodeError({ code: 1, index: 0, begin: 0, length: 1, message: `x${text}` });
    expect(odd.length - 19).toBe(maxErrorMessageLength - 1);
  });

  it('round-trips a handshake with every piece of a large swarm', () => {
    const bitfield = Bitfield.full(maxPieceCount).toBuffer();
    const message = {
      type: 'handshake' as const,
      ...handshake,
      pieceCount: maxPieceCount,
      bitfield,
    };
    const frame = encodeMessage(message);
    expect(frame.readUInt32BE(0)).toBeLessThanOrEqual(maxHandshakeFrameLength);
    expect(decodeFrame(frame)).toEqual({ ok: true, value: message });
  });
});

import type { Message } from './codec';

/**
 * Golden frames, written out by hand from the layouts in `codec.ts` (not produced by the
 * encoder), one per message and edge. Tests check both directions: encode → hex, hex → decode.
 */
export type GoldenFrame = {
  readonly name: string;
  readonly message: Message;
  readonly hex: string;
};

const hex = (...parts: string[]): string => parts.join('');
const bytes = (text: string): Buffer => Buffer.from(text, 'hex');

export const goldenFrames: readonly GoldenFrame[] = [
  {
    name: 'handshake: origin, 20-byte peer id, 10 pieces {0, 2, 9}',
    message: {
      type: 'handshake',
      version: 1,
      flags: 0x01,
      infoHash: bytes('000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f'),
      peerId: Buffer.from('-SH0001-abcdefghijkl', 'ascii'),
      pieceCount: 10,
      bitfield: bytes('a040'),
    },
    hex: hex(
      '00000048', // length 72
      '00', // id handshake
      '09', // protocol name length
      '73686f616c2d703270', // "shoal-p2p"
      '01', // version
      '01', // flags: origin
      '000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f', // info hash
      '14', // peer id length 20
      '2d5348303030312d6162636465666768696a6b6c', // "-SH0001-abcdefghijkl"
      '0000000a', // 10 pieces
      'a040', // 1010 0000 0100 0000: pieces 0, 2, 9
    ),
  },
  {
    name: 'handshake: empty blob, 32-byte peer id, no bitfield bytes',
    message: {
      type: 'handshake',
      version: 1,
      flags: 0,
      infoHash: Buffer.alloc(32, 0xff),
      peerId: Buffer.alloc(32, 0xaa),
      pieceCount: 0,
      bitfield: Buffer.alloc(0),
    },
    hex: hex(
      '00000052', // length 82
      '00',
      '09',
      '73686f616c2d703270',
      '01',
      '00',
      'ff'.repeat(32),
      '20', // peer id length 32
      'aa'.repeat(32),
      '00000000',
    ),
  },
  {
    name: 'have 0x01020304',
    message: { type: 'have', index: 0x01020304 },
    hex: hex('00000005', '01', '01020304'),
  },
  {
    name: 'request piece 7, 256 KiB from 64 KiB',
    message: { type: 'request', index: 7, begin: 65536, length: 262144 },
    hex: hex('0000000d', '02', '00000007', '00010000', '00040000'),
  },
  {
    name: 'piece 7 at 64 KiB, 5 bytes "shoal"',
    message: { type: 'piece', index: 7, begin: 65536, data: Buffer.from('shoal') },
    hex: hex('0000000e', '03', '00000007', '00010000', '73686f616c'),
  },
  {
    name: 'cancel piece 7, 256 KiB from 64 KiB',
    message: { type: 'cancel', index: 7, begin: 65536, length: 262144 },
    hex: hex('0000000d', '04', '00000007', '00010000', '00040000'),
  },
  {
    name: 'error UNAVAILABLE answering request 7:0+256 KiB, "gone"',
    message: { type: 'error', code: 2, index: 7, begin: 0, length: 262144, message: 'gone' },
    hex: hex('00000013', '05', '0002', '00000007', '00000000', '00040000', '676f6e65'),
  },
  {
    name: 'error UNKNOWN_SWARM about the connection, no text',
    message: { type: 'error', code: 17, index: 0xffffffff, begin: 0, length: 0, message: '' },
    hex: hex('0000000f', '05', '0011', 'ffffffff', '00000000', '00000000'),
  },
  {
    name: 'error with UTF-8 text "é"',
    message: { type: 'error', code: 16, index: 0xffffffff, begin: 0, length: 0, message: 'é' },
    hex: hex('00000011', '05', '0010', 'ffffffff', '00000000', '00000000', 'c3a9'),
  },
  { name: 'complete', message: { type: 'complete' }, hex: hex('00000001', '06') },
  { name: 'keepalive', message: { type: 'keepalive' }, hex: hex('00000001', '07') },
];

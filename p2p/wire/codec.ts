import type { Result } from '../../domain';
import { fail, ok } from '../../domain';
import { Bitfield } from './bitfield';
import type { MessageType } from './constants';
import {
  frameHeaderLength,
  handshakeFixedLength,
  infoHashLength,
  maxBlockLength,
  maxErrorMessageLength,
  maxFrameLength,
  maxHandshakeFrameLength,
  maxPeerIdLength,
  maxPieceCount,
  messageIds,
  messageTypeOf,
  minHandshakeFrameLength,
  minPeerIdLength,
  noPieceIndex,
  pieceHeaderLength,
  protocolName,
} from './constants';
import type { Violation } from './violations';
import { violation } from './violations';

/*
 * A pure codec for every message. `encodeX` returns the whole frame (length prefix included);
 * `decodeX` reads a frame's body (the bytes after the id) and returns the message or the
 * violation it makes. Integers are big-endian. Layouts give byte offsets within the frame.
 */

export type HandshakeMessage = {
  readonly type: 'handshake';
  /** Highest protocol version the sender speaks. */
  readonly version: number;
  readonly flags: number;
  /** Raw 32-byte info hash (SHA-256 of the canonical metainfo). */
  readonly infoHash: Buffer;
  readonly peerId: Buffer;
  readonly pieceCount: number;
  /** ⌈pieceCount / 8⌉ bytes, MSB first, spare bits zero (see {@link Bitfield}). */
  readonly bitfield: Buffer;
};
export type HaveMessage = { readonly type: 'have'; readonly index: number };
export type RequestMessage = {
  readonly type: 'request';
  readonly index: number;
  readonly begin: number;
  readonly length: number;
};
export type PieceMessage = {
  readonly type: 'piece';
  readonly index: number;
  readonly begin: number;
  readonly data: Buffer;
};
export type CancelMessage = {
  readonly type: 'cancel';
  readonly index: number;
  readonly begin: number;
  readonly length: number;
};
export type ErrorMessage = {
  readonly type: 'error';
  readonly code: number;
  /** The request answered, or {@link noPieceIndex} (with begin and length 0) for none. */
  readonly index: number;
  readonly begin: number;
  readonly length: number;
  readonly message: string;
};
export type CompleteMessage = { readonly type: 'complete' };
export type KeepaliveMessage = { readonly type: 'keepalive' };

export type Message =
  | HandshakeMessage
  | HaveMessage
  | RequestMessage
  | PieceMessage
  | CancelMessage
  | ErrorMessage
  | CompleteMessage
  | KeepaliveMessage;

/** A decoded message or the violation its bytes make. */
export type Decoded<T> = Result<T, Violation>;

const protocolNameBytes = Buffer.from(protocolName, 'ascii');

const frame = (id: number, bodyLength: number): Buffer => {
  const buffer = Buffer.allocUnsafe(frameHeaderLength + bodyLength);
  buffer.writeUInt32BE(1 + bodyLength, 0);
  buffer.writeUInt8(id, 4);
  return buffer;
};

const checkUint32 = (name: string, value: number): void => {
  if (!Number.isInteger(value) || value < 0 || value > 0xffffffff) {
    throw new RangeError(`${name} must be a uint32, got ${value}`);
  }
};

/**
 * Handshake, sent first by the dialer, then by the acceptor once it knows the swarm.
 *
 * ```
 * 0   4  length = 50 + L + ⌈P/8⌉
 * 4   1  id = 0
 * 5   1  protocol name length = 9
 * 6   9  "shoal-p2p" (ASCII)
 * 15  1  version: the highest the sender speaks (the session uses the lower of both)
 * 16  1  flags: bit 0 = the sender is an origin; other bits zero, ignored on receipt
 * 17  32 info hash (raw SHA-256)
 * 49  1  peer id length L, 20..32
 * 50  L  peer id
 * 50+L 4 piece count P, ≤ 2^20
 * 54+L ⌈P/8⌉ bitfield, piece i at bit 0x80 >> (i % 8) of byte i / 8; spare bits zero
 * ```
 */
export const encodeHandshake = (message: Omit<HandshakeMessage, 'type'>): Buffer => {
  const { version, flags, infoHash, peerId, pieceCount, bitfield } = message;
  if (infoHash.length !== infoHashLength) throw new RangeError('info hash must be 32 bytes');
  if (peerId.length < minPeerIdLength || peerId.length > maxPeerIdLength) {
    throw new RangeError(`peer id must be ${minPeerIdLength}..${maxPeerIdLength} bytes`);
  }
  if (!Number.isInteger(pieceCount) || pieceCount < 0 || pieceCount > maxPieceCount) {
    throw new RangeError(`piece count must be 0..${maxPieceCount}, got ${pieceCount}`);
  }
  if (bitfield.length !== Bitfield.byteLengthOf(pieceCount)) {
    throw new RangeError('bitfield length does not match the piece count');
  }
  const buffer = frame(
    messageIds.handshake,
    handshakeFixedLength + peerId.length + bitfield.length,
  );
  let at = frameHeaderLength;
  at = buffer.writeUInt8(protocolNameBytes.length, at);
  at += protocolNameBytes.copy(buffer, at);
  at = buffer.writeUInt8(version & 0xff, at);
  at = buffer.writeUInt8(flags & 0xff, at);
  at += infoHash.copy(buffer, at);
  at = buffer.writeUInt8(peerId.length, at);
  at += peerId.copy(buffer, at);
  at = buffer.writeUInt32BE(pieceCount, at);
  bitfield.copy(buffer, at);
  return buffer;
};

export const decodeHandshake = (body: Buffer): Decoded<HandshakeMessage> => {
  const nameLength = body.readUInt8(0);
  if (
    nameLength !== protocolNameBytes.length ||
    body.length < 1 + nameLength ||
    !body.subarray(1, 1 + nameLength).equals(protocolNameBytes)
  ) {
    return fail(violation('bad-magic', 'not a shoal-p2p handshake'));
  }
  if (body.length < handshakeFixedLength + minPeerIdLength) {
    return fail(violation('bad-handshake', 'handshake too short'));
  }
  let at = 1 + nameLength;
  const version = body.readUInt8(at++);
  const flags = body.readUInt8(at++);
  const infoHash = Buffer.from(body.subarray(at, at + infoHashLength));
  at += infoHashLength;
  const peerIdLength = body.readUInt8(at++);
  if (peerIdLength < minPeerIdLength || peerIdLength > maxPeerIdLength) {
    return fail(violation('bad-handshake', `peer id length ${peerIdLength}`));
  }
  if (body.length < at + peerIdLength + 4) {
    return fail(violation('bad-handshake', 'handshake too short for its peer id'));
  }
  const peerId = Buffer.from(body.subarray(at, at + peerIdLength));
  at += peerIdLength;
  const pieceCount = body.readUInt32BE(at);
  at += 4;
  if (pieceCount > maxPieceCount) {
    return fail(violation('bad-handshake', `piece count ${pieceCount} over ${maxPieceCount}`));
  }
  const bitfield = body.subarray(at);
  if (bitfield.length !== Bitfield.byteLengthOf(pieceCount)) {
    return fail(
      violation('bad-handshake', `bitfield of ${bitfield.length} bytes for ${pieceCount} pieces`),
    );
  }
  if (!Bitfield.spareBitsClear(pieceCount, bitfield)) {
    return fail(violation('bitfield-spare-bits', `bits set past piece ${pieceCount - 1}`));
  }
  return ok({
    type: 'handshake',
    version,
    flags,
    infoHash,
    peerId,
    pieceCount,
    bitfield: Buffer.from(bitfield),
  });
};

/**
 * Have: the sender has verified and stored a piece.
 *
 * ```
 * 0 4 length = 5
 * 4 1 id = 1
 * 5 4 piece index
 * ```
 */
export const encodeHave = (index: number): Buffer => {
  checkUint32('index', index);
  const buffer = frame(messageIds.have, 4);
  buffer.writeUInt32BE(index, 5);
  return buffer;
};

export const decodeHave = (body: Buffer): Decoded<HaveMessage> =>
  ok({ type: 'have', index: body.readUInt32BE(0) });

const encodeRange = (id: number, index: number, begin: number, length: number): Buffer => {
  checkUint32('index', index);
  checkUint32('begin', begin);
  checkUint32('length', length);
  const buffer = frame(id, 12);
  buffer.writeUInt32BE(index, 5);
  buffer.writeUInt32BE(begin, 9);
  buffer.writeUInt32BE(length, 13);
  return buffer;
};

/**
 * Request: send bytes `[begin, begin + length)` of a piece. A side has at most one request
 * per piece outstanding on a connection, and at most `maxPendingRequests` in all. Every
 * request gets exactly one answer: `piece` frames covering the range in order, or a
 * request-scoped `error` (e.g. `CANCELLED` after a cancel, `UNAVAILABLE`).
 *
 * ```
 * 0  4 length = 13
 * 4  1 id = 2
 * 5  4 piece index
 * 9  4 begin (byte offset within the piece)
 * 13 4 length (1..16 MiB, within the piece)
 * ```
 */
export const encodeRequest = (index: number, begin: number, length: number): Buffer =>
  encodeRange(messageIds.request, index, begin, length);

export const decodeRequest = (body: Buffer): Decoded<RequestMessage> =>
  ok({
    type: 'request',
    index: body.readUInt32BE(0),
    begin: body.readUInt32BE(4),
    length: body.readUInt32BE(8),
  });

/**
 * Piece: one block of a requested range, the payload straight after the header. Its length
 * is the frame's length less 9; blocks of one request come in order without gaps.
 *
 * ```
 * 0  4 length = 9 + n (n = 1..256 KiB)
 * 4  1 id = 3
 * 5  4 piece index
 * 9  4 begin (byte offset of this block within the piece)
 * 13 n payload
 * ```
 */
export const encodePieceHeader = (index: number, begin: number, length: number): Buffer => {
  checkUint32('index', index);
  checkUint32('begin', begin);
  if (!Number.isInteger(length) || length < 1 || length > maxBlockLength) {
    throw new RangeError(`block length must be 1..${maxBlockLength}, got ${length}`);
  }
  const buffer = Buffer.allocUnsafe(pieceHeaderLength);
  buffer.writeUInt32BE(9 + length, 0);
  buffer.writeUInt8(messageIds.piece, 4);
  buffer.writeUInt32BE(index, 5);
  buffer.writeUInt32BE(begin, 9);
  return buffer;
};

/** Writes a piece frame's 13 header bytes into `target` at `at` (before its payload). */
export const writePieceHeader = (
  target: Buffer,
  at: number,
  index: number,
  begin: number,
  length: number,
): void => {
  target.writeUInt32BE(9 + length, at);
  target.writeUInt8(messageIds.piece, at + 4);
  target.writeUInt32BE(index, at + 5);
  target.writeUInt32BE(begin, at + 9);
};

/** A whole piece frame in one buffer (tests, fixtures); connections write header and payload. */
export const encodePiece = (index: number, begin: number, data: Uint8Array): Buffer =>
  Buffer.concat([encodePieceHeader(index, begin, data.length), data]);

/** Reads the 8 header bytes of a piece body; the payload is the rest. */
export const decodePieceHeader = (body: Buffer): { index: number; begin: number } => ({
  index: body.readUInt32BE(0),
  begin: body.readUInt32BE(4),
});

export const decodePiece = (body: Buffer): Decoded<PieceMessage> =>
  ok({ type: 'piece', ...decodePieceHeader(body), data: body.subarray(8) });

/**
 * Cancel: the sender no longer wants an outstanding request. The receiver answers it with
 * `error CANCELLED` (at the next block boundary if it is sending it) unless it has already
 * sent the whole range; a cancel that names no outstanding request is ignored.
 *
 * ```
 * 0  4 length = 13
 * 4  1 id = 4
 * 5  4 piece index
 * 9  4 begin
 * 13 4 length
 * ```
 */
export const encodeCancel = (index: number, begin: number, length: number): Buffer =>
  encodeRange(messageIds.cancel, index, begin, length);

export const decodeCancel = (body: Buffer): Decoded<CancelMessage> =>
  ok({
    type: 'cancel',
    index: body.readUInt32BE(0),
    begin: body.readUInt32BE(4),
    length: body.readUInt32BE(8),
  });

/**
 * Error: codes < 16 answer one request (named by index, begin, length); codes ≥ 16 are
 * about the connection (index 0xffffffff, begin and length 0) and the sender closes after.
 *
 * ```
 * 0  4 length = 15 + m
 * 4  1 id = 5
 * 5  2 code
 * 7  4 piece index, or 0xffffffff
 * 11 4 begin
 * 15 4 length
 * 19 m message, UTF-8, m ≤ 1024
 * ```
 */
export const encodeError = (message: Omit<ErrorMessage, 'type'>): Buffer => {
  const { code, index, begin, length } = message;
  if (!Number.isInteger(code) || code < 0 || code > 0xffff) {
    throw new RangeError(`error code must be a uint16, got ${code}`);
  }
  checkUint32('index', index);
  checkUint32('begin', begin);
  checkUint32('length', length);
  const text = truncateUtf8(message.message, maxErrorMessageLength);
  const buffer = frame(messageIds.error, 14 + text.length);
  buffer.writeUInt16BE(code, 5);
  buffer.writeUInt32BE(index, 7);
  buffer.writeUInt32BE(begin, 11);
  buffer.writeUInt32BE(length, 15);
  text.copy(buffer, 19);
  return buffer;
};

export const decodeError = (body: Buffer): Decoded<ErrorMessage> =>
  ok({
    type: 'error',
    code: body.readUInt16BE(0),
    index: body.readUInt32BE(2),
    begin: body.readUInt32BE(6),
    length: body.readUInt32BE(10),
    message: body.subarray(14).toString('utf8'),
  });

/** Fields of a connection-scoped error frame (no request named). */
export const connectionError = (code: number, message: string): Omit<ErrorMessage, 'type'> => ({
  code,
  index: noPieceIndex,
  begin: 0,
  length: 0,
  message,
});

/**
 * Complete: the sender has every piece (its bitfield is now all ones).
 *
 * ```
 * 0 4 length = 1
 * 4 1 id = 6
 * ```
 */
export const encodeComplete = (): Buffer => frame(messageIds.complete, 0);

/**
 * Keepalive: sent when nothing else was sent for a while, so the receiver's idle timer
 * tells a silent peer from a dead one.
 *
 * ```
 * 0 4 length = 1
 * 4 1 id = 7
 * ```
 */
export const encodeKeepalive = (): Buffer => frame(messageIds.keepalive, 0);

/** Allowed values of a frame's length field, by message; checked before the body is read. */
const lengthRange: Record<MessageType, readonly [number, number]> = {
  handshake: [minHandshakeFrameLength, maxHandshakeFrameLength],
  have: [5, 5],
  request: [13, 13],
  piece: [10, 9 + maxBlockLength],
  cancel: [13, 13],
  error: [15, 15 + maxErrorMessageLength],
  complete: [1, 1],
  keepalive: [1, 1],
};

/**
 * Checks a frame header (the length field and the id) before its body is read: unknown ids,
 * lengths over the cap of any frame or of this message, and lengths a message cannot have.
 */
export const checkFrameHeader = (length: number, id: number): Result<MessageType, Violation> => {
  if (length > maxFrameLength) {
    return fail(violation('oversize-frame', `frame of ${length} bytes over ${maxFrameLength}`));
  }
  const type = messageTypeOf.get(id);
  if (type === undefined) return fail(violation('unknown-message', `message id ${id}`));
  const [min, max] = lengthRange[type];
  if (length > max) {
    return fail(violation('oversize-frame', `${type} frame of ${length} bytes over ${max}`));
  }
  if (length < min) return fail(violation('bad-length', `${type} frame of ${length} bytes`));
  return ok(type);
};

/** Decodes a body whose header passed {@link checkFrameHeader}. */
export const decodeBody = (type: MessageType, body: Buffer): Decoded<Message> => {
  switch (type) {
    case 'handshake':
      return decodeHandshake(body);
    case 'have':
      return decodeHave(body);
    case 'request':
      return decodeRequest(body);
    case 'piece':
      return decodePiece(body);
    case 'cancel':
      return decodeCancel(body);
    case 'error':
      return decodeError(body);
    case 'complete':
      return ok({ type: 'complete' });
    case 'keepalive':
      return ok({ type: 'keepalive' });
  }
};

/** Decodes exactly one whole frame (tests, fixtures); streams go through the `Framer`. */
export const decodeFrame = (bytes: Buffer): Decoded<Message> => {
  if (bytes.length < frameHeaderLength) return fail(violation('bad-length', 'short frame'));
  const length = bytes.readUInt32BE(0);
  const header = checkFrameHeader(length, bytes.readUInt8(4));
  if (!header.ok) return header;
  if (bytes.length !== 4 + length) {
    return fail(violation('bad-length', `frame says ${length} bytes, has ${bytes.length - 4}`));
  }
  return decodeBody(header.value, bytes.subarray(frameHeaderLength));
};

/** Encodes any message (pieces in one buffer). */
export const encodeMessage = (message: Message): Buffer => {
  switch (message.type) {
    case 'handshake':
      return encodeHandshake(message);
    case 'have':
      return encodeHave(message.index);
    case 'request':
      return encodeRequest(message.index, message.begin, message.length);
    case 'piece':
      return encodePiece(message.index, message.begin, message.data);
    case 'cancel':
      return encodeCancel(message.index, message.begin, message.length);
    case 'error':
      return encodeError(message);
    case 'complete':
      return encodeComplete();
    case 'keepalive':
      return encodeKeepalive();
  }
};

const truncateUtf8 = (text: string, maxBytes: number): Buffer => {
  const bytes = Buffer.from(text, 'utf8');
  if (bytes.length <= maxBytes) return bytes;
  let end = maxBytes;
  // Back up to the start of a UTF-8 sequence so the cut leaves valid text.
  while (end > 0 && ((bytes[end] ?? 0) & 0xc0) === 0x80) end -= 1;
  return bytes.subarray(0, end);
};

import { maxPieceLength } from '../metainfo';

/**
 * Constants of Shoal's peer wire protocol, version 1. Every frame is
 * `uint32 BE length | uint8 id | body`, where `length` counts the id and the body (not itself).
 * Integers are big-endian and unsigned. See `codec.ts` for each message's layout.
 */

/** Sent at the start of every handshake; anything else on the first frame is not Shoal. */
export const protocolName = 'shoal-p2p';
/** The highest protocol version this code speaks; a session uses the lower of both sides'. */
export const protocolVersion = 1;
/** The lowest version this code accepts. */
export const minProtocolVersion = 1;

export const messageIds = {
  handshake: 0,
  have: 1,
  request: 2,
  piece: 3,
  cancel: 4,
  error: 5,
  complete: 6,
  keepalive: 7,
} as const;

export type MessageType = keyof typeof messageIds;
export type MessageId = (typeof messageIds)[MessageType];

export const messageTypeOf: ReadonlyMap<number, MessageType> = new Map(
  (Object.keys(messageIds) as MessageType[]).map((type) => [messageIds[type], type]),
);

/** `uint32 length | uint8 id`. */
export const frameHeaderLength = 5;
/** `uint32 length | uint8 id | uint32 index | uint32 begin`, then the payload. */
export const pieceHeaderLength = 13;

/** The info hash on the wire: the raw 32 bytes of the metainfo's SHA-256 info hash. */
export const infoHashLength = 32;
export const minPeerIdLength = 20;
export const maxPeerIdLength = 32;

/**
 * Most pieces a swarm may have: 2^20, i.e. 16 TiB at the 16 MiB maximum piece length
 * (`pieceLengthFor` keeps blobs up to 32 GiB at ≤ 2048 pieces). Bounds the bitfield a peer
 * can make us buffer to {@link maxBitfieldLength}.
 */
export const maxPieceCount = 1 << 20;
export const maxBitfieldLength = maxPieceCount / 8;

/**
 * Largest payload of one `piece` frame. A request may cover a whole piece (up to
 * {@link maxRequestLength}); the answer is a run of `piece` frames of at most this size, so
 * control frames (have, request, cancel) on the same socket wait at most one block behind a
 * piece (42 ms at 6 MiB/s, not the 2.7 s of a 16 MiB frame), a cancel takes effect at the next
 * block, and the rate limiter hands out turns in blocks.
 */
export const maxBlockLength = 256 * 1024;
/**
 * What this implementation puts in one `piece` frame: the largest, so a 256 KiB window of a
 * response (one read, one egress turn, one write) is one frame, and the receiver handles one
 * frame, not four, per window. Control frames never wait behind it: the window's tokens are
 * taken before it is written, and on loopback or a LAN it leaves in well under a millisecond.
 */
export const defaultBlockLength = 256 * 1024;
/** Largest range one request may name: a whole piece of the largest piece length. */
export const maxRequestLength = maxPieceLength;
/** Unanswered requests one side may have on a connection; more is a violation. */
export const maxPendingRequests = 64;
/** UTF-8 bytes in an `error` message's text. */
export const maxErrorMessageLength = 1024;
/** `index` of an `error` frame that is about the connection, not one request. */
export const noPieceIndex = 0xffffffff;

/** Fixed part of a handshake body, without the peer id and the bitfield. */
export const handshakeFixedLength = 1 + protocolName.length + 1 + 1 + infoHashLength + 1 + 4;
/** Largest handshake frame (the `length` field): id, fixed part, longest peer id, bitfield. */
export const maxHandshakeFrameLength =
  1 + handshakeFixedLength + maxPeerIdLength + maxBitfieldLength;
export const minHandshakeFrameLength = 1 + handshakeFixedLength + minPeerIdLength;
/** Largest value of any frame's `length` field: a piece frame with a full block. */
export const maxFrameLength = Math.max(1 + 8 + maxBlockLength, maxHandshakeFrameLength);

/** Handshake flag bits; unknown bits are sent as zero and ignored. */
export const handshakeFlags = {
  /** The sender is an origin (a seeder of last resort), not an agent. */
  origin: 0x01,
} as const;

/**
 * Codes of the `error` message. Codes below 16 answer one request (which the frame names)
 * and leave the connection open; codes from 16 are about the connection, and the sender
 * closes it after the frame. Unknown codes are read by the same rule.
 */
export const wireErrorCodes = {
  /** Answer to a cancel: the request ended early. */
  CANCELLED: 1,
  /** The sender does not have (or can no longer read) the requested range. */
  UNAVAILABLE: 2,
  /** The sender is serving too much right now; ask someone else. */
  BUSY: 3,
  PROTOCOL_VIOLATION: 16,
  /** The acceptor does not serve this info hash. */
  UNKNOWN_SWARM: 17,
  VERSION_UNSUPPORTED: 18,
  /** Too many connections. */
  OVERLOADED: 19,
  SHUTTING_DOWN: 20,
  DUPLICATE_CONNECTION: 21,
  INTERNAL: 22,
} as const;

export type WireErrorName = keyof typeof wireErrorCodes;
/** First connection-scoped error code. */
export const firstConnectionErrorCode = 16;

export const isRequestErrorCode = (code: number): boolean => code < firstConnectionErrorCode;

export const wireErrorNameOf = (code: number): string =>
  (Object.keys(wireErrorCodes) as WireErrorName[]).find((name) => wireErrorCodes[name] === code) ??
  `code ${code}`;

/** Connection timing defaults (milliseconds). */
export const wireDefaults = {
  /** From `handshake()`/`accept()` until both handshakes are exchanged (Kraken: 5 s). */
  handshakeTimeoutMs: 5_000,
  /** Send a keepalive when nothing else was sent for this long. */
  keepaliveIntervalMs: 10_000,
  /** Close when nothing was received (or a write has not drained) for this long. */
  idleTimeoutMs: 30_000,
  /**
   * A `have` waits at most this long for another frame to the same peer to ride with: one
   * write (and one wake-up of the peer) for several frames. A `have` per piece and peer sent
   * at once was most of an agent's writes at 8 MiB/s (32 pieces/s to each of its peers).
   */
  haveDelayMs: 100,
} as const;

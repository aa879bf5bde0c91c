/**
 * Ways a peer can break the protocol. Each closes the connection (with an `error` frame
 * `PROTOCOL_VIOLATION` when the stream still makes sense) and is counted; none is thrown.
 */
export const violationKinds = [
  /** The first frame is not a Shoal handshake (wrong protocol string, or not a frame at all). */
  'bad-magic',
  /** The peer speaks only versions this code does not. */
  'version-unsupported',
  /** A handshake field is malformed (peer id length, bitfield length, piece count cap). */
  'bad-handshake',
  /** The acceptor answered for another swarm than the one the dialer asked for. */
  'wrong-info-hash',
  /** The acceptor is not the peer the dialer meant to reach. */
  'wrong-peer-id',
  /** Same info hash, different piece count: the peer's metainfo is not ours. */
  'piece-count-mismatch',
  /** The bitfield has bits set past the piece count. */
  'bitfield-spare-bits',
  /** A frame's length field exceeds the cap for its message (or any message). */
  'oversize-frame',
  /** A frame's length does not fit its message (e.g. a `have` that is not 4 bytes). */
  'bad-length',
  'unknown-message',
  /** A frame other than the handshake (or an error) before the handshakes are done. */
  'message-before-handshake',
  /** A second handshake. */
  'unexpected-handshake',
  /** `have`, `request`, `piece` or `cancel` naming a piece past the piece count. */
  'piece-index-out-of-range',
  /** A request whose range is empty, longer than the cap, or past the piece's end. */
  'request-out-of-range',
  /** A request for a piece already requested on this connection and not yet answered. */
  'duplicate-request',
  /** More than `maxPendingRequests` unanswered requests. */
  'too-many-requests',
  /** A `piece` frame that does not continue an outstanding request. */
  'unsolicited-piece',
  /** A request-scoped `error` for a request that is not outstanding, or naming none. */
  'unsolicited-answer',
] as const;

export type ViolationKind = (typeof violationKinds)[number];

export type Violation = { readonly kind: ViolationKind; readonly message: string };

export const violation = (kind: ViolationKind, message: string): Violation => ({ kind, message });

/**
 * Counters a host keeps across its connections (pass one object to every connection):
 * violations by kind and connection closes by kind. Plain numbers, for a metrics exporter.
 */
export type WireStats = {
  readonly violations: Record<ViolationKind, number>;
  readonly closes: Record<string, number>;
};

export const createWireStats = (): WireStats => ({
  violations: Object.fromEntries(violationKinds.map((kind) => [kind, 0])) as Record<
    ViolationKind,
    number
  >,
  closes: {},
});

import { randomBytes } from 'node:crypto';
import { once } from 'node:events';
import type { AddressInfo, Socket } from 'node:net';
import { connect as netConnect, createServer } from 'node:net';
import type { Duplex } from 'node:stream';
import { Readable } from 'node:stream';
import { TokenBucket } from '../bandwidth';
import type { Metainfo } from '../metainfo';
import { MetainfoBuilder, infoHash, pieceBounds } from '../metainfo';
import { Bitfield } from './bitfield';
import type { Message } from './codec';
import {
  encodeHandshake,
  encodeHave,
  encodeKeepalive,
  encodeMessage,
  encodePiece,
  encodeRequest,
} from './codec';
import type {
  CloseReason,
  LocalSwarm,
  PeerConnectionOptions,
  PieceBlock,
  PieceRequest,
} from './connection';
import { PeerConnection } from './connection';
import { defaultBlockLength, maxPendingRequests, wireErrorCodes } from './constants';
import { duplexPair } from '../../test/doubles/duplexPair';
import { Framer } from './framer';
import { createWireStats } from './violations';

const KiB = 1024;
const MiB = 1024 * KiB;

type Blob = { data: Buffer; metainfo: Metainfo; infoHash: string };

const blobOf = (length: number, pieceLength: number): Blob => {
  const data = randomBytes(length);
  const metainfo = new MetainfoBuilder(pieceLength).update(data).digest();
  return { data, metainfo, infoHash: infoHash(metainfo) };
};

const swarmOf = (blob: Blob, have: 'all' | 'none' | number[] = 'none'): LocalSwarm => {
  const count = blob.metainfo.pieceHashes.length;
  const bitfield = have === 'all' ? Bitfield.full(count) : new Bitfield(count);
  if (Array.isArray(have)) for (const index of have) bitfield.set(index);
  return {
    infoHash: blob.infoHash,
    length: blob.metainfo.length,
    pieceLength: blob.metainfo.pieceLength,
    bitfield,
  };
};

const peerId = () => randomBytes(20);

/** Range of the blob a request names. */
const slice = (blob: Blob, request: PieceRequest): Buffer => {
  const { start } = pieceBounds(blob.metainfo, request.index);
  return blob.data.subarray(start + request.begin, start + request.begin + request.length);
};

/** Serves every request from the blob's bytes, as a Buffer or as a Readable. */
const serve = (connection: PeerConnection, blob: Blob, as: 'buffer' | 'stream' = 'buffer') => {
  const answers: Promise<boolean>[] = [];
  connection.on('request', (request) => {
    const bytes = slice(blob, request);
    const data = as === 'buffer' ? bytes : Readable.from(oddChunks(bytes));
    answers.push(connection.sendPiece(request.index, request.begin, data));
  });
  return answers;
};

/** Splits bytes into irregular chunks, as a file or socket might deliver them. */
function* oddChunks(bytes: Buffer): Generator<Buffer> {
  const sizes = [1, 7000, 65536, 100_000, 3];
  for (let at = 0, i = 0; at < bytes.length; i += 1) {
    const n = sizes[i % sizes.length] as number;
    yield bytes.subarray(at, at + n);
    at += n;
  }
}

/** Collects the blocks of one request until it is done. */
const receive = (connection: PeerConnection, index: number): Promise<Buffer> =>
  new Promise((resolve) => {
    const parts: Buffer[] = [];
    const onPiece = (block: PieceBlock) => {
      if (block.index !== index) return;
      parts.push(...block.chunks.map((chunk) => Buffer.from(chunk)));
      if (block.done) {
        connection.off('piece', onPiece);
        resolve(Buffer.concat(parts));
      }
    };
    connection.on('piece', onPiece);
  });

const closed = (connection: PeerConnection): Promise<CloseReason> =>
  connection.closeReason !== undefined
    ? Promise.resolve(connection.closeReason)
    : (once(connection, 'close') as Promise<[CloseReason]>).then(([reason]) => reason);

const pair = async (
  blob: Blob,
  options: {
    dialer?: Partial<PeerConnectionOptions>;
    acceptor?: Partial<PeerConnectionOptions>;
    dialerHas?: 'all' | 'none' | number[];
    acceptorHas?: 'all' | 'none' | number[];
    highWaterMark?: number;
  } = {},
) => {
  const [a, b] = duplexPair({ highWaterMark: options.highWaterMark });
  const stats = createWireStats();
  const dialer = new PeerConnection(a, { peerId: peerId(), stats, ...options.dialer });
  const acceptor = new PeerConnection(b, {
    peerId: peerId(),
    origin: true,
    stats,
    ...options.acceptor,
  });
  const [dialed, accepted] = await Promise.all([
    dialer.handshake(swarmOf(blob, options.dialerHas)),
    acceptor.accept(() => swarmOf(blob, options.acceptorHas ?? 'all')),
  ]);
  if (!dialed.ok || !accepted.ok) throw new Error('handshake failed');
  return { dialer, acceptor, stats, a, b };
};

/** A hand-driven peer: writes raw bytes, decodes what the connection under test sends. */
const rawPeer = (socket: Duplex) => {
  const received: Message[] = [];
  const parts: Buffer[] = [];
  const framer = new Framer(
    {
      message: (message) => received.push(message),
      piece: (frame) => {
        // Parts of a frame as they arrive: one message per frame, once it is all in.
        parts.push(...frame.chunks.map((c) => Buffer.from(c)));
        if (frame.offset + frame.length < frame.frameLength) return;
        const begin = frame.begin + frame.length - frame.frameLength;
        received.push({
          type: 'piece',
          index: frame.index,
          begin,
          data: Buffer.concat(parts.splice(0)),
        });
      },
      violation: () => undefined,
    },
    { expectHandshake: false },
  );
  socket.on('data', (chunk: Buffer) => framer.push(chunk));
  socket.on('error', () => undefined);
  return {
    received,
    write: (bytes: Buffer) => socket.write(bytes),
    handshakeFor: (
      blob: Blob,
      id = peerId(),
      have = new Bitfield(blob.metainfo.pieceHashes.length),
    ) =>
      encodeHandshake({
        version: 1,
        flags: 0,
        infoHash: Buffer.from(blob.infoHash, 'hex'),
        peerId: id,
        pieceCount: have.length,
        bitfield: have.toBuffer(),
      }),
  };
};

/** An acceptor under test facing a raw dialer that has already sent its handshake. */
const acceptorFacingRaw = async (blob: Blob, options: Partial<PeerConnectionOptions> = {}) => {
  const [a, b] = duplexPair();
  const stats = createWireStats();
  const violations: string[] = [];
  const connection = new PeerConnection(b, {
    peerId: peerId(),
    stats,
    onViolation: (v) => violations.push(v.kind),
    ...options,
  });
  const raw = rawPeer(a);
  const accepted = connection.accept(() => swarmOf(blob, 'all'));
  raw.write(raw.handshakeFor(blob));
  return { connection, raw, stats, violations, accepted };
};

const blob = blobOf(MiB + 1000, 256 * KiB); // 5 pieces, the last of 1000 bytes

describe('PeerConnection handshake', () => {
  it('exchanges peer ids, versions, origin flags and bitfields', async () => {
    const { dialer, acceptor } = await pair(blob, { dialerHas: [1, 4] });
    expect(dialer.remote?.origin).toBe(true);
    expect(dialer.remote?.version).toBe(1);
    expect(dialer.remote?.bitfield.complete).toBe(true);
    expect(acceptor.remote?.origin).toBe(false);
    expect([...(acceptor.remote?.bitfield.indices() ?? [])]).toEqual([1, 4]);
    dialer.close();
    expect((await closed(acceptor)).kind).toBe('ended');
  });

  it('reports an unknown swarm to the dialer as a remote error', async () => {
    const [a, b] = duplexPair();
    const dialer = new PeerConnection(a, { peerId: peerId() });
    const acceptor = new PeerConnection(b, { peerId: peerId() });
    void acceptor.accept(() => undefined);
    const result = await dialer.handshake(swarmOf(blob));
    expect(result).toMatchObject({
      ok: false,
      error: { kind: 'remote-error', code: wireErrorCodes.UNKNOWN_SWARM },
    });
    expect(acceptor.closeReason).toMatchObject({ kind: 'local', code: 17 });
  });

  it('passes a refusal code on (e.g. overloaded)', async () => {
    const [a, b] = duplexPair();
    const dialer = new PeerConnection(a, { peerId: peerId() });
    const acceptor = new PeerConnection(b, { peerId: peerId() });
    void acceptor.accept(async () => ({ refuse: wireErrorCodes.OVERLOADED, message: 'full' }));
    expect(await dialer.handshake(swarmOf(blob))).toMatchObject({
      ok: false,
      error: { kind: 'remote-error', code: wireErrorCodes.OVERLOADED, message: 'OVERLOADED: full' },
    });
  });

  it('closes on a wrong info hash or an unexpected peer id, and counts it', async () => {
    const other = blobOf(blob.data.length, 256 * KiB); // same piece count, other swarm
    for (const [answer, expectedPeerId, kind] of [
      [swarmOf(other, 'all'), undefined, 'wrong-info-hash'],
      [swarmOf(blob, 'all'), peerId(), 'wrong-peer-id'],
    ] as const) {
      const [a, b] = duplexPair();
      const stats = createWireStats();
      const dialer = new PeerConnection(a, { peerId: peerId(), stats });
      const acceptor = new PeerConnection(b, { peerId: peerId() });
      void acceptor.accept(() => answer);
      const result = await dialer.handshake(swarmOf(blob), { expectedPeerId });
      expect(result).toMatchObject({ ok: false, error: { kind: 'violation' } });
      expect(stats.violations[kind]).toBe(1);
      expect((await closed(acceptor)).kind).toBe('remote-error');
    }
  });

  it('times out a silent peer', async () => {
    const [a] = duplexPair();
    const connection = new PeerConnection(a, { peerId: peerId(), handshakeTimeoutMs: 50 });
    const result = await connection.handshake(swarmOf(blob));
    expect(result).toMatchObject({ ok: false, error: { kind: 'handshake-timeout' } });
  });
});

describe('PeerConnection pieces', () => {
  it('answers a whole-piece request in blocks that reassemble to the piece', async () => {
    const { dialer, acceptor } = await pair(blob, { acceptor: { blockLength: 16 * KiB } });
    const answers = serve(acceptor, blob);
    const blocks: PieceBlock[] = [];
    dialer.on('piece', (block) => blocks.push(block));
    const got = receive(dialer, 1);
    expect(dialer.request(1)).toBe(true);
    expect(dialer.pendingRequests).toBe(1);
    expect((await got).equals(slice(blob, { index: 1, begin: 0, length: 256 * KiB }))).toBe(true);
    expect(blocks).toHaveLength(16);
    expect(blocks.map((b) => b.begin)).toEqual(blocks.map((_, i) => i * 16 * KiB));
    expect(blocks.filter((b) => b.done)).toHaveLength(1);
    expect(dialer.pendingRequests).toBe(0);
    expect(await Promise.all(answers)).toEqual([true]);
    expect(acceptor.servingRequests).toBe(0);
    dialer.close();
  });

  it('streams a piece from a Readable, and serves ranges and the short last piece', async () => {
    const { dialer, acceptor } = await pair(blob);
    serve(acceptor, blob, 'stream');
    const whole = receive(dialer, 0);
    dialer.request(0);
    expect((await whole).equals(slice(blob, { index: 0, begin: 0, length: 256 * KiB }))).toBe(true);
    const range = receive(dialer, 2);
    dialer.request(2, 1000, 70_000);
    expect((await range).equals(slice(blob, { index: 2, begin: 1000, length: 70_000 }))).toBe(true);
    const last = receive(dialer, 4);
    dialer.request(4);
    expect((await last).equals(blob.data.subarray(4 * 256 * KiB))).toBe(true);
    dialer.close();
  });

  it('keeps pipelined requests apart and refuses what the protocol forbids', async () => {
    const { dialer, acceptor } = await pair(blob);
    serve(acceptor, blob);
    const all = [0, 1, 2, 3, 4].map((index) => receive(dialer, index));
    for (const index of [0, 1, 2, 3, 4]) expect(dialer.request(index)).toBe(true);
    expect(dialer.request(0)).toBe(false); // one request per piece
    expect(dialer.request(5)).toBe(false); // out of range
    expect(dialer.request(4, 0, 1001)).toBe(false); // past the last piece's end
    expect(Buffer.concat(await Promise.all(all)).equals(blob.data)).toBe(true);
    dialer.close();
  });

  it('passes have and complete on and keeps the remote bitfield current', async () => {
    const { dialer, acceptor } = await pair(blob, { acceptorHas: 'none' });
    const haves: number[] = [];
    dialer.on('have', (index) => haves.push(index));
    acceptor.sendHave(3);
    acceptor.sendHave(1);
    acceptor.sendComplete();
    await once(dialer, 'complete');
    expect(haves).toEqual([3, 1]);
    expect(dialer.remote?.bitfield.complete).toBe(true);
    dialer.close();
  });

  it('sends a have with the next frame to the peer, or after haveDelayMs', async () => {
    const { dialer, acceptor } = await pair(blob, {
      acceptorHas: 'none',
      acceptor: { haveDelayMs: 60_000 },
    });
    const seen: string[] = [];
    dialer.on('have', (index) => seen.push(`have ${index}`));
    dialer.on('request', (request) => seen.push(`request ${request.index}`));
    acceptor.sendHave(2);
    acceptor.sendHave(0);
    await new Promise((resolve) => setTimeout(resolve, 50));
    expect(seen).toEqual([]); // still waiting for a frame to ride with
    acceptor.request(4);
    await once(dialer, 'request');
    expect(seen).toEqual(['have 2', 'have 0', 'request 4']);
    dialer.close();

    const quick = await pair(blob, { acceptorHas: 'none', acceptor: { haveDelayMs: 10 } });
    const alone = once(quick.dialer, 'have');
    quick.acceptor.sendHave(1);
    expect(await alone).toEqual([1]);
    quick.dialer.close();
  });

  it('answers a reject with a rejected event and frees the slot', async () => {
    const { dialer, acceptor } = await pair(blob);
    acceptor.on('request', (request) =>
      acceptor.reject(request.index, wireErrorCodes.BUSY, 'later'),
    );
    dialer.request(2);
    const [request, code, message] = await once(dialer, 'rejected');
    expect(request).toEqual({ index: 2, begin: 0, length: 256 * KiB });
    expect([code, message]).toEqual([wireErrorCodes.BUSY, 'later']);
    expect(dialer.pendingRequests).toBe(0);
    expect(dialer.request(2)).toBe(true);
    dialer.close();
  });

  it('reads a range straight into its frame buffers, a window at a time', async () => {
    const { dialer, acceptor } = await pair(blob, { acceptor: { blockLength: 16 * KiB } });
    const reads: Array<{ offset: number; lengths: number[]; owners: number }> = [];
    acceptor.on('request', (request) => {
      const bytes = slice(blob, request);
      const reader = {
        readv: async (offset: number, targets: readonly Buffer[]) => {
          const owners = new Set(targets.map((t) => t.buffer)).size;
          reads.push({ offset, lengths: targets.map((t) => t.length), owners });
          let at = offset;
          for (const target of targets) at += bytes.copy(target, 0, at, at + target.length);
          return true;
        },
      };
      void acceptor.sendPiece(request.index, request.begin, reader);
    });
    const whole = receive(dialer, 1);
    dialer.request(1);
    expect((await whole).equals(slice(blob, { index: 1, begin: 0, length: 256 * KiB }))).toBe(true);
    // 256 KiB of 16 KiB blocks: one read of 16 frames' payloads, all in one pooled buffer.
    expect(reads).toEqual([{ offset: 0, lengths: Array(16).fill(16 * KiB), owners: 1 }]);
    const range = receive(dialer, 4);
    dialer.request(4, 10, 990);
    expect((await range).equals(slice(blob, { index: 4, begin: 10, length: 990 }))).toBe(true);
    dialer.close();
  });

  it('answers UNAVAILABLE when a range reader cannot read', async () => {
    const { dialer, acceptor } = await pair(blob);
    acceptor.on('request', (request) => {
      void acceptor.sendPiece(request.index, request.begin, { readv: async () => false });
    });
    dialer.request(2);
    const [, code] = await once(dialer, 'rejected');
    expect(code).toBe(wireErrorCodes.UNAVAILABLE);
    expect(dialer.pendingRequests).toBe(0);
    dialer.close();
  });

  it('answers a source that ends early with UNAVAILABLE', async () => {
    const { dialer, acceptor } = await pair(blob);
    acceptor.on('request', (request) => {
      void acceptor.sendPiece(request.index, request.begin, Readable.from([Buffer.alloc(10)]));
    });
    const blocks: PieceBlock[] = [];
    dialer.on('piece', (block) => blocks.push(block));
    dialer.request(0);
    const [, code] = await once(dialer, 'rejected');
    expect(code).toBe(wireErrorCodes.UNAVAILABLE);
    expect(blocks.map((b) => b.length)).toEqual([10]);
    expect(dialer.pendingRequests).toBe(0);
    dialer.close();
  });

  it('cancels mid-piece: the sender stops at a block boundary and answers CANCELLED', async () => {
    // 64 KiB/s egress with 4 KiB blocks: the 256 KiB piece would take ~4 s.
    const egress = new TokenBucket({ rate: 64 * KiB, burst: 4 * KiB });
    const { dialer, acceptor } = await pair(blob, { acceptor: { blockLength: 4 * KiB, egress } });
    const sent: Promise<boolean>[] = [];
    acceptor.on('request', (request) =>
      sent.push(acceptor.sendPiece(request.index, request.begin, slice(blob, request))),
    );
    const cancelled = once(acceptor, 'cancel');
    let blocks = 0;
    dialer.on('piece', () => {
      blocks += 1;
      if (blocks === 2) dialer.cancel(3);
    });
    dialer.request(3);
    expect(await cancelled).toEqual([{ index: 3, begin: 0, length: 256 * KiB }]);
    expect(await sent[0]).toBe(false);
    while (dialer.pendingRequests > 0) await new Promise((r) => setTimeout(r, 5));
    expect(blocks).toBe(2); // blocks in flight after the cancel are dropped, not delivered
    expect(acceptor.payloadSent).toBeLessThan(64 * KiB);
    expect(dialer.request(3)).toBe(true);
    dialer.close();
  });

  it('answers a cancel for a request not yet started at once', async () => {
    const { dialer, acceptor } = await pair(blob);
    dialer.request(0);
    await once(acceptor, 'request');
    dialer.cancel(0);
    await once(acceptor, 'cancel');
    expect(
      await acceptor.sendPiece(0, 0, slice(blob, { index: 0, begin: 0, length: 256 * KiB })),
    ).toBe(false);
    while (dialer.pendingRequests > 0) await new Promise((r) => setTimeout(r, 5));
    dialer.close();
  });
});

describe('PeerConnection violations', () => {
  const cases: [string, (raw: ReturnType<typeof rawPeer>) => void, string][] = [
    ['an oversize frame', (raw) => raw.write(Buffer.from('0100000003', 'hex')), 'oversize-frame'],
    [
      'an unknown message id',
      (raw) => raw.write(Buffer.from('0000000109', 'hex')),
      'unknown-message',
    ],
    ['a have past the piece count', (raw) => raw.write(encodeHave(5)), 'piece-index-out-of-range'],
    [
      'a request past the piece count',
      (raw) => raw.write(encodeRequest(9, 0, 1)),
      'piece-index-out-of-range',
    ],
    [
      'a request past the piece end',
      (raw) => raw.write(encodeRequest(4, 0, 1001)),
      'request-out-of-range',
    ],
    [
      'an unsolicited piece',
      (raw) => raw.write(encodePiece(0, 0, Buffer.alloc(10))),
      'unsolicited-piece',
    ],
    [
      'an unsolicited answer',
      (raw) =>
        raw.write(
          encodeMessage({ type: 'error', code: 2, index: 1, begin: 0, length: 5, message: '' }),
        ),
      'unsolicited-answer',
    ],
    [
      'a duplicate request',
      (raw) => raw.write(Buffer.concat([encodeRequest(1, 0, 10), encodeRequest(1, 10, 10)])),
      'duplicate-request',
    ],
  ];

  it.each(cases)('disconnects and counts %s', async (_name, misbehave, kind) => {
    const { connection, raw, stats, violations, accepted } = await acceptorFacingRaw(blob);
    expect((await accepted).ok).toBe(true);
    connection.on('request', () => undefined); // never answered
    misbehave(raw);
    const reason = await closed(connection);
    expect(reason).toMatchObject({ kind: 'violation', violation: { kind } });
    expect(violations).toEqual([kind]);
    expect(stats.violations[kind as keyof typeof stats.violations]).toBe(1);
    expect(stats.closes.violation).toBe(1);
    // The peer is told why before the stream ends.
    await new Promise((r) => setImmediate(r));
    expect(raw.received.at(-1)).toMatchObject({ type: 'error', code: 16 });
  });

  it('caps unanswered requests', async () => {
    const big = blobOf(100 * 1000, 1000);
    const { connection, raw, violations } = await acceptorFacingRaw(big);
    raw.write(
      Buffer.concat(
        Array.from({ length: maxPendingRequests + 1 }, (_, i) => encodeRequest(i, 0, 1000)),
      ),
    );
    expect(await closed(connection)).toMatchObject({ violation: { kind: 'too-many-requests' } });
    expect(violations).toEqual(['too-many-requests']);
  });

  it('refuses a stream that is not Shoal, a bad bitfield and early messages', async () => {
    const run = async (bytes: Buffer) => {
      const [a, b] = duplexPair();
      const violations: string[] = [];
      const connection = new PeerConnection(b, {
        peerId: peerId(),
        onViolation: (v) => violations.push(v.kind),
      });
      const accepted = connection.accept(() => swarmOf(blob, 'all'));
      rawPeer(a).write(bytes);
      expect((await accepted).ok).toBe(false);
      return violations;
    };
    expect(await run(Buffer.from('GET / HTTP/1.1\r\nHost: x\r\n\r\n'))).toEqual(['bad-magic']);
    const raw = rawPeer(duplexPair()[0]);
    const handshake = raw.handshakeFor(blob);
    const spare = Buffer.from(handshake);
    spare[spare.length - 1] = 0xff; // 5 pieces: bits 5..7 of the only byte are spare
    expect(await run(spare)).toEqual(['bitfield-spare-bits']);
    expect(await run(Buffer.concat([handshake, encodeHave(1)]))).toEqual([
      'message-before-handshake',
    ]);
    const wrongCount = raw.handshakeFor(blob, peerId(), new Bitfield(6));
    expect(await run(wrongCount)).toEqual(['piece-count-mismatch']);
    const version0 = Buffer.from(handshake);
    version0[15] = 0; // the version byte
    expect(await run(version0)).toEqual(['version-unsupported']);
  });

  it('survives random garbage after the handshake without throwing', async () => {
    for (let round = 0; round < 20; round += 1) {
      const { connection, raw } = await acceptorFacingRaw(blob);
      connection.on('request', () => undefined);
      raw.write(randomBytes(1 + Math.floor(Math.random() * 200)));
      raw.write(randomBytes(5000));
      const reason = await Promise.race([
        closed(connection),
        new Promise<undefined>((r) => setTimeout(() => r(undefined), 50)),
      ]);
      if (reason !== undefined) expect(['violation', 'remote-error']).toContain(reason.kind);
      connection.close();
    }
  });
});

describe('PeerConnection timers', () => {
  it('keeps a quiet connection alive with keepalives', async () => {
    const timing = { keepaliveIntervalMs: 20, idleTimeoutMs: 120 };
    const { dialer, acceptor } = await pair(blob, { dialer: timing, acceptor: timing });
    await new Promise((r) => setTimeout(r, 400));
    expect(dialer.isOpen && acceptor.isOpen).toBe(true);
    dialer.close();
  });

  it('closes a connection whose peer falls silent', async () => {
    const [a, b] = duplexPair();
    const connection = new PeerConnection(b, {
      peerId: peerId(),
      keepaliveIntervalMs: 20,
      idleTimeoutMs: 100,
    });
    const raw = rawPeer(a);
    const accepted = connection.accept(() => swarmOf(blob, 'all'));
    raw.write(raw.handshakeFor(blob));
    expect((await accepted).ok).toBe(true);
    raw.write(encodeKeepalive());
    expect((await closed(connection)).kind).toBe('idle-timeout');
    expect(raw.received.some((m) => m.type === 'keepalive')).toBe(true);
  });
});

describe('PeerConnection back-pressure', () => {
  const big = blobOf(8 * MiB, 8 * MiB); // one 8 MiB piece

  /** A Readable over the piece that counts how much of it the connection has pulled. */
  const countingSource = (bytes: Buffer) => {
    const counter = { pulled: 0 };
    let at = 0;
    const stream = new Readable({
      highWaterMark: 64 * KiB,
      read() {
        const chunk = bytes.subarray(at, at + 64 * KiB);
        at += chunk.length;
        counter.pulled += chunk.length;
        this.push(chunk.length > 0 ? chunk : null);
      },
    });
    return { stream, counter };
  };

  it('pulls from the source only as fast as an in-memory reader reads', async () => {
    const { dialer, acceptor } = await pair(big, { highWaterMark: 16 * KiB });
    const { stream, counter } = countingSource(big.data);
    acceptor.on('request', (r) => void acceptor.sendPiece(r.index, r.begin, stream));
    dialer.pauseReading();
    const got = receive(dialer, 0);
    dialer.request(0);
    await new Promise((r) => setTimeout(r, 100));
    // Pair buffers (16 KiB each way) + the source's 64 KiB + one block + the chunk in hand.
    expect(counter.pulled).toBeLessThanOrEqual(320 * KiB);
    expect(acceptor.socket.writableLength).toBeLessThanOrEqual(16 * KiB + 64 * KiB + 13);
    dialer.resumeReading();
    expect((await got).equals(big.data)).toBe(true);
    dialer.close();
  });

  it('waits for drain on a real socket with a slow reader, never buffering the blob', async () => {
    const server = createServer();
    server.listen(0, '127.0.0.1');
    await once(server, 'listening');
    const { port } = server.address() as AddressInfo;
    const accepted = once(server, 'connection') as Promise<[Socket]>;
    const client = netConnect(port, '127.0.0.1');
    await once(client, 'connect');
    const [socket] = await accepted;
    const acceptor = new PeerConnection(socket, { peerId: peerId() });
    const dialer = new PeerConnection(client, { peerId: peerId() });
    await Promise.all([acceptor.accept(() => swarmOf(big, 'all')), dialer.handshake(swarmOf(big))]);
    const { stream, counter } = countingSource(big.data);
    const sending = new Promise<boolean>((resolve) =>
      acceptor.on('request', (r) => resolve(acceptor.sendPiece(r.index, r.begin, stream))),
    );
    dialer.pauseReading();
    const got = receive(dialer, 0);
    dialer.request(0);
    // Let the kernel buffers fill, then check the sender is held back.
    let before = -1;
    while (counter.pulled !== before) {
      before = counter.pulled;
      await new Promise((r) => setTimeout(r, 100));
    }
    expect(counter.pulled).toBeLessThan(big.data.length);
    expect(socket.writableLength).toBeLessThanOrEqual(
      socket.writableHighWaterMark + defaultBlockLength + 13,
    );
    // A slow reader: read in short bursts.
    for (let i = 0; i < 5; i += 1) {
      dialer.resumeReading();
      await new Promise((r) => setImmediate(r));
      dialer.pauseReading();
      await new Promise((r) => setTimeout(r, 10));
    }
    dialer.resumeReading();
    expect((await got).equals(big.data)).toBe(true);
    expect(await sending).toBe(true);
    dialer.close();
    await closed(acceptor);
    server.close();
  });
});

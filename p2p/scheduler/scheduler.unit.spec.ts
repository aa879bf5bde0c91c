import { randomBytes } from 'node:crypto';
import { Readable } from 'node:stream';
import { TokenBucket } from '../bandwidth';
import type { PieceRequest } from '../wire';
import { Bitfield, PeerConnection, wireErrorCodes } from '../wire';
import type { SchedulerConfig } from './config';
import type { PeerCandidate } from './events';
import type { PieceSource } from './pieceSource';
import { BlobScheduler } from './scheduler';
import type { TestBlob } from '../../test/doubles/memoryPieces';
import { memoryPieces, testBlob } from '../../test/doubles/memoryPieces';
import { memoryNetwork } from '../../test/doubles/memoryNetwork';

const KiB = 1024;

type TestNode = {
  readonly id: Buffer;
  readonly address: string;
  readonly origin: boolean;
  readonly scheduler: BlobScheduler;
  readonly pieces: ReturnType<typeof memoryPieces>;
  readonly candidate: PeerCandidate;
};

/** Resolves once `predicate` holds (checked as the loop turns), or fails after `ms`. */
const until = async (predicate: () => boolean, ms = 5000): Promise<void> => {
  const deadline = Date.now() + ms;
  while (!predicate()) {
    if (Date.now() > deadline) throw new Error('condition not reached');
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
};

describe('BlobScheduler (several peers over in-memory streams)', () => {
  let net: ReturnType<typeof memoryNetwork>;
  let nodes: TestNode[];
  let blob: TestBlob;

  beforeEach(() => {
    net = memoryNetwork();
    nodes = [];
    blob = testBlob(16 * 64 * KiB - 1000, 64 * KiB);
  });

  afterEach(() => {
    for (const node of nodes) node.scheduler.close('test over');
  });

  const node = (
    options: {
      has?: 'all' | number[];
      corrupt?: boolean;
      origin?: boolean;
      config?: Partial<SchedulerConfig>;
      egressRate?: number;
      source?: (pieces: ReturnType<typeof memoryPieces>) => PieceSource;
      now?: () => number;
      onPeersWanted?: () => void;
    } = {},
  ): TestNode => {
    const id = randomBytes(20);
    const address = `peer-${nodes.length}:1`;
    const origin = options.origin === true;
    const pieces = memoryPieces(blob, { has: options.has, corrupt: options.corrupt });
    const egress =
      options.egressRate === undefined
        ? undefined
        : new TokenBucket({ rate: options.egressRate, burst: 64 * KiB });
    const connection = { ...(egress !== undefined && { egress }) };
    const scheduler = new BlobScheduler({
      metainfo: blob.metainfo,
      store: options.source?.(pieces) ?? pieces,
      peerId: id,
      origin,
      config: { tickMs: 20, ...options.config },
      connection,
      dial: net.dial,
      ...(options.now !== undefined && { now: options.now }),
      ...(options.onPeersWanted !== undefined && { onPeersWanted: options.onPeersWanted }),
    });
    net.listen(address, () => scheduler, { ...connection, peerId: id, origin });
    const candidate = {
      peerId: id.toString('hex'),
      address,
      origin,
      complete: pieces.complete,
    };
    const made = { id, address, origin, scheduler, pieces, candidate };
    nodes.push(made);
    return made;
  };

  const expectBlob = (n: TestNode) => expect(n.pieces.data.equals(blob.data)).toBe(true);

  it('leechers complete from one rate-limited origin, mostly from each other', async () => {
    const origin = node({ has: 'all', origin: true, egressRate: 512 * KiB });
    const leechers = Array.from({ length: 5 }, () => node());
    for (const leecher of leechers) {
      leecher.scheduler.addPeers([origin.candidate, ...leechers.map((l) => l.candidate)]);
    }
    await Promise.all(leechers.map((l) => l.scheduler.done));
    for (const leecher of leechers) {
      expectBlob(leecher);
      expect(leecher.scheduler.state).toBe('seeding');
    }
    const fromPeers = leechers.reduce(
      (sum, l) => sum + l.scheduler.stats.bytesDownloaded - l.scheduler.stats.originBytes,
      0,
    );
    expect(fromPeers).toBeGreaterThan(blob.data.length);
    expect(origin.scheduler.stats.bytesUploaded).toBeLessThan(3 * blob.data.length);
  }, 20_000);

  it('seeds while downloading: a peer that knows only another leecher completes', async () => {
    const origin = node({ has: 'all', origin: true, egressRate: 1024 * KiB });
    const a = node();
    const b = node();
    a.scheduler.addPeers([origin.candidate]);
    b.scheduler.addPeers([a.candidate]);
    await Promise.all([a.scheduler.done, b.scheduler.done]);
    expectBlob(b);
    expect(b.scheduler.stats.originBytes).toBe(0);
    // A's last upload is counted once its write finished, just after B verified the blob.
    await until(() => a.scheduler.stats.bytesUploaded >= blob.data.length);
  }, 20_000);

  it('re-requests a piece elsewhere when a peer does not answer in time', async () => {
    const staller = node({ has: 'all', source: stalling });
    const good = node({ has: 'all', egressRate: 2048 * KiB });
    const leecher = node({
      config: { requestTimeoutMs: 300, requestTimeoutPerMiBMs: 0, endgameThreshold: 0 },
    });
    leecher.scheduler.addPeers([staller.candidate, good.candidate]);
    await leecher.scheduler.done;
    expectBlob(leecher);
    expect(leecher.scheduler.stats.timeouts).toBeGreaterThan(0);
  }, 20_000);

  it('asks origins for no piece an agent holds while that agent serves, if slowly', async () => {
    // The agent serves one request at a time and answers the others BUSY: slow, not gone.
    const agent = node({
      has: 'all',
      egressRate: 1024 * KiB,
      config: { maxUploads: 1, maxQueuedUploads: 0 },
    });
    const origin = node({ has: 'all', origin: true });
    const leecher = node();
    leecher.scheduler.addPeers([agent.candidate]);
    await until(() => leecher.scheduler.connectionCount === 1);
    leecher.scheduler.addPeers([origin.candidate]);
    await leecher.scheduler.done;
    expectBlob(leecher);
    expect(leecher.scheduler.stats.originBytes).toBe(0);
  }, 20_000);

  it('asks an origin for what an agent holds once that agent gives nothing', async () => {
    // The agent's only upload slot hangs: it answers every other request BUSY, for ever.
    const agent = node({
      has: 'all',
      source: stalling,
      config: { maxUploads: 1, maxQueuedUploads: 0 },
    });
    const origin = node({ has: 'all', origin: true, egressRate: 2048 * KiB });
    const leecher = node({ config: { requestTimeoutMs: 300, requestTimeoutPerMiBMs: 0 } });
    leecher.scheduler.addPeers([agent.candidate]);
    await until(() => leecher.scheduler.connectionCount === 1);
    leecher.scheduler.addPeers([origin.candidate]);
    await leecher.scheduler.done;
    expectBlob(leecher);
    expect(leecher.scheduler.stats.originBytes).toBe(blob.data.length);
  }, 10_000);

  it('endgame: duplicate requests finish the last pieces without a timeout', async () => {
    blob = testBlob(4 * 64 * KiB, 64 * KiB);
    const staller = node({ has: 'all', source: stalling });
    const good = node({ has: 'all' });
    const leecher = node({
      config: { requestTimeoutMs: 60_000, endgameThreshold: 4, endgameDuplicates: 2 },
    });
    leecher.scheduler.addPeers([staller.candidate, good.candidate]);
    const started = Date.now();
    await leecher.scheduler.done;
    expect(Date.now() - started).toBeLessThan(10_000);
    expectBlob(leecher);
    expect(leecher.scheduler.stats.timeouts).toBe(0);
  }, 20_000);

  it('detects a peer serving corrupt pieces, blacklists it for a while, completes', async () => {
    let skew = 0;
    const clock = () => performance.now() + skew;
    const liar = node({ has: 'all', corrupt: true });
    const good = node({ has: 'all', egressRate: 1024 * KiB });
    const leecher = node({ now: clock, config: { blacklistMs: 60_000 } });
    leecher.scheduler.addPeers([liar.candidate, good.candidate]);
    await leecher.scheduler.done;
    expectBlob(leecher);
    expect(leecher.scheduler.stats.badPieces).toBeGreaterThan(0);
    expect(leecher.scheduler.stats.blacklisted).toBeGreaterThan(0);
    expect(leecher.scheduler.connections().map((c) => c.peerId)).not.toContain(
      liar.candidate.peerId,
    );

    const knock = async () => {
      const conn = new PeerConnection(await net.dial(leecher.address), { peerId: liar.id });
      return conn.handshake({
        infoHash: blob.infoHash,
        length: blob.metainfo.length,
        pieceLength: blob.metainfo.pieceLength,
        bitfield: Bitfield.full(blob.metainfo.pieceHashes.length),
      });
    };
    const refused = await knock();
    expect(refused.ok).toBe(false);
    if (!refused.ok) expect(refused.error.code).toBe(wireErrorCodes.OVERLOADED);
    skew += 61_000; // the blacklist entry expires
    expect((await knock()).ok).toBe(true);
  }, 20_000);

  it('keeps a slot for dialing out when incoming peers fill the rest (Kraken #162)', async () => {
    const seeder = node({ has: 'all', egressRate: 2048 * KiB });
    const fresh = node({
      config: { maxConnections: 3, reservedOutbound: 1, reservedInbound: 0 },
    });
    const others = Array.from({ length: 3 }, () => node());
    for (const other of others) other.scheduler.addPeers([fresh.candidate]);
    await until(() => fresh.scheduler.connectionCount === 2 && net.refused >= 1);
    expect(fresh.scheduler.connections().every((c) => c.direction === 'in')).toBe(true);
    fresh.scheduler.addPeers([seeder.candidate]);
    await fresh.scheduler.done;
    expectBlob(fresh);
    expect(fresh.scheduler.stats.connectionsOpened).toBeGreaterThanOrEqual(3);
  }, 20_000);

  it('asks for more peers, at most every starvedAnnounceMs, while short of them', async () => {
    const seeder = node({ has: 'all', egressRate: 2048 * KiB });
    const wanted: number[] = [];
    let answer = false;
    const late = node({
      config: { maxConnections: 4, starvedAnnounceMs: 100 },
      onPeersWanted: () => {
        wanted.push(performance.now());
        // The announce it stands for: the tracker names the seeder after a while.
        if (answer) late.scheduler.addPeers([seeder.candidate]);
      },
    });
    // A full peer refuses it: no slot is free.
    const full = node({ config: { maxConnections: 1, reservedOutbound: 0 } });
    const other = node();
    other.scheduler.addPeers([full.candidate]);
    await until(() => full.scheduler.connectionCount === 1);
    late.scheduler.addPeers([full.candidate]);
    await until(() => net.refused >= 1 && wanted.length >= 3);
    expect(late.scheduler.connectionCount).toBe(0);
    const gaps = wanted.slice(1).map((at, i) => at - (wanted[i] as number));
    expect(Math.min(...gaps)).toBeGreaterThanOrEqual(95);
    answer = true;
    await late.scheduler.done;
    expectBlob(late);
    // Complete: it wants no more peers.
    const asked = wanted.length;
    await new Promise((resolve) => setTimeout(resolve, 250));
    expect(wanted.length).toBe(asked);
  }, 10_000);

  it('does not ask for peers while half its connection slots are in use', async () => {
    const seeder = node({ has: 'all', egressRate: 256 * KiB });
    const helper = node({ has: [0, 1, 2, 3] });
    let wanted = 0;
    const leecher = node({
      config: { maxConnections: 4, starvedAnnounceMs: 20 },
      onPeersWanted: () => (wanted += 1),
    });
    leecher.scheduler.addPeers([seeder.candidate, helper.candidate]);
    await until(() => leecher.scheduler.connectionCount === 2);
    const before = wanted;
    await new Promise((resolve) => setTimeout(resolve, 200));
    expect(leecher.scheduler.connectionCount).toBe(2);
    expect(wanted).toBe(before);
  }, 10_000);

  it('stops seeding after the configured time', async () => {
    const seeder = node({ has: 'all' });
    const leecher = node({ config: { seedTimeMs: 200 } });
    leecher.scheduler.addPeers([seeder.candidate]);
    await leecher.scheduler.done;
    const completed = Date.now();
    expect(leecher.scheduler.state).toBe('seeding');
    await until(() => leecher.scheduler.state === 'closed');
    expect(Date.now() - completed).toBeGreaterThanOrEqual(150);
  }, 10_000);
});

describe('upload policy (origins and queues)', () => {
  it('answers BUSY once to a repeat request for a piece its agents already hold', async () => {
    const net = memoryNetwork();
    const blob = testBlob(4 * 64 * KiB, 64 * KiB);
    const id = randomBytes(20);
    const origin = new BlobScheduler({
      metainfo: blob.metainfo,
      store: memoryPieces(blob, { has: 'all' }),
      peerId: id,
      origin: true,
      config: { originBusyAvailability: 1, tickMs: 20 },
    });
    net.listen('origin:1', () => origin, { peerId: id, origin: true });
    const swarm = (have: number[]) => {
      const bitfield = new Bitfield(4);
      for (const index of have) bitfield.set(index);
      return {
        infoHash: blob.infoHash,
        length: blob.metainfo.length,
        pieceLength: blob.metainfo.pieceLength,
        bitfield,
      };
    };
    const agent = async (have: number[]) => {
      const conn = new PeerConnection(await net.dial('origin:1'), { peerId: randomBytes(20) });
      expect((await conn.handshake(swarm(have))).ok).toBe(true);
      return conn;
    };
    const answer = (conn: PeerConnection, index: number) =>
      new Promise<'piece' | number>((resolve) => {
        conn.on('piece', (block) => block.done && block.index === index && resolve('piece'));
        conn.on('rejected', (request: PieceRequest, code) => {
          if (request.index === index) resolve(code);
        });
        conn.request(index);
      });

    const holder = await agent([0]); // an agent that already has piece 0
    const first = await agent([]);
    expect(await answer(first, 0)).toBe('piece'); // never sent: served
    const second = await agent([]);
    expect(await answer(second, 0)).toBe(wireErrorCodes.BUSY); // a repeat others can serve
    expect(await answer(second, 0)).toBe('piece'); // asked again: served
    expect(await answer(second, 1)).toBe('piece'); // nobody else has piece 1
    expect(origin.stats.busySent).toBe(1);
    for (const conn of [holder, first, second]) conn.close();
    origin.close();
  }, 10_000);

  it('answers BUSY at once when its upload queue is full (no timeout, no waste)', async () => {
    const net = memoryNetwork();
    const blob = testBlob(4 * 64 * KiB, 64 * KiB);
    const id = randomBytes(20);
    const seeder = new BlobScheduler({
      metainfo: blob.metainfo,
      store: stalling(memoryPieces(blob, { has: 'all' })),
      peerId: id,
      config: { maxUploads: 1, maxQueuedUploads: 1, tickMs: 20 },
    });
    net.listen('seed:1', () => seeder, { peerId: id });
    const conn = new PeerConnection(await net.dial('seed:1'), { peerId: randomBytes(20) });
    const handshake = await conn.handshake({
      infoHash: blob.infoHash,
      length: blob.metainfo.length,
      pieceLength: blob.metainfo.pieceLength,
      bitfield: new Bitfield(4),
    });
    expect(handshake.ok).toBe(true);
    const rejected = new Promise<[number, number]>((resolve) =>
      conn.on('rejected', (request: PieceRequest, code) => resolve([request.index, code])),
    );
    // Piece 0 is being sent (forever), piece 1 waits, piece 2 finds the queue full.
    for (const index of [0, 1, 2]) conn.request(index);
    expect(await rejected).toEqual([2, wireErrorCodes.BUSY]);
    conn.close();
    seeder.close();
  }, 10_000);

  it('sends every piece once before it sends any piece twice', async () => {
    const net = memoryNetwork();
    const blob = testBlob(3 * 64 * KiB, 64 * KiB);
    const id = randomBytes(20);
    const origin = new BlobScheduler({
      metainfo: blob.metainfo,
      store: memoryPieces(blob, { has: 'all' }),
      peerId: id,
      origin: true,
      config: { originBusyAvailability: 2, tickMs: 20 },
    });
    net.listen('origin:1', () => origin, { peerId: id, origin: true });
    const agent = async () => {
      const conn = new PeerConnection(await net.dial('origin:1'), { peerId: randomBytes(20) });
      const ok = await conn.handshake({
        infoHash: blob.infoHash,
        length: blob.metainfo.length,
        pieceLength: blob.metainfo.pieceLength,
        bitfield: new Bitfield(3),
      });
      expect(ok.ok).toBe(true);
      return conn;
    };
    const answer = (conn: PeerConnection, index: number) =>
      new Promise<'piece' | number>((resolve) => {
        const onPiece = (block: { index: number; done: boolean }) => {
          if (block.done && block.index === index) resolve('piece');
        };
        conn.on('piece', onPiece);
        conn.on('rejected', (request: PieceRequest, code) => {
          if (request.index === index) resolve(code);
        });
        conn.request(index);
      });
    const [a, b, c] = [await agent(), await agent(), await agent()];
    expect(await answer(a, 0)).toBe('piece');
    expect(await answer(b, 0)).toBe(wireErrorCodes.BUSY); // pieces 1 and 2 were never sent
    expect(await answer(b, 1)).toBe('piece');
    expect(await answer(c, 2)).toBe('piece');
    // Every piece went out once; nobody else holds piece 0 yet: the repeat is served.
    expect(await answer(c, 0)).toBe('piece');
    for (const conn of [a, b, c]) conn.close();
    origin.close();
  }, 10_000);

  it('answers one agent BUSY for one repeat piece up to originBusyRepeats times', async () => {
    const net = memoryNetwork();
    const blob = testBlob(2 * 64 * KiB, 64 * KiB);
    const id = randomBytes(20);
    const origin = new BlobScheduler({
      metainfo: blob.metainfo,
      store: memoryPieces(blob, { has: 'all' }),
      peerId: id,
      origin: true,
      config: { originBusyAvailability: 2, originBusyRepeats: 3, tickMs: 20 },
    });
    net.listen('origin:1', () => origin, { peerId: id, origin: true });
    const agent = async () => {
      const conn = new PeerConnection(await net.dial('origin:1'), { peerId: randomBytes(20) });
      const ok = await conn.handshake({
        infoHash: blob.infoHash,
        length: blob.metainfo.length,
        pieceLength: blob.metainfo.pieceLength,
        bitfield: new Bitfield(2),
      });
      expect(ok.ok).toBe(true);
      return conn;
    };
    const answer = (conn: PeerConnection, index: number) =>
      new Promise<'piece' | number>((resolve) => {
        const onPiece = (block: { index: number; done: boolean }) => {
          if (block.done && block.index === index) resolve('piece');
        };
        conn.on('piece', onPiece);
        conn.on('rejected', (request: PieceRequest, code) => {
          if (request.index === index) resolve(code);
        });
        conn.request(index);
      });
    const [a, b] = [await agent(), await agent()];
    expect(await answer(a, 0)).toBe('piece');
    // Piece 1 was never sent: b's repeat of piece 0 is deflected three times, then served.
    for (let i = 0; i < 3; i += 1) expect(await answer(b, 0)).toBe(wireErrorCodes.BUSY);
    expect(await answer(b, 0)).toBe('piece');
    for (const conn of [a, b]) conn.close();
    origin.close();
  }, 10_000);
});

/** A source that has every piece but never sends a byte of one. */
function stalling(pieces: ReturnType<typeof memoryPieces>): PieceSource {
  return {
    pieceCount: pieces.pieceCount,
    complete: true,
    get count() {
      return pieces.count;
    },
    has: (index) => pieces.has(index),
    bitfield: () => pieces.bitfield(),
    pieceSize: (index) => pieces.pieceSize(index),
    createReadStream: () => new Readable({ read() {} }),
  };
}

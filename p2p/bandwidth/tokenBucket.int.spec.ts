import { randomBytes } from 'node:crypto';
import { Readable, Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { MetainfoBuilder, infoHash } from '../metainfo';
import type { LocalSwarm } from '../wire';
import { duplexPair } from '../../test/doubles/duplexPair';
import { Bitfield, PeerConnection } from '../wire';
import { createBandwidth } from './bandwidth';
import { createThrottle } from './throttle';
import { TokenBucket } from './tokenBucket';

// Real-time tests. They measure rates over ~1.5 s and allow ±10 %: the bucket refills from
// elapsed time, so a late timer (a loaded machine) costs nothing until it is later than the
// burst (100 ms at these rates).
const MiB = 1024 * 1024;
const rate = 6 * MiB;
const window = 1500;

/** Takes `chunk` bytes at a time until `until`, counting what it got. */
const consume = async (limiter: TokenBucket, chunk: number, until: number) => {
  let bytes = 0;
  while (performance.now() < until) {
    if (!limiter.tryTake(chunk)) await limiter.take(chunk);
    bytes += chunk;
  }
  return bytes;
};

describe('TokenBucket throughput', () => {
  it('holds one consumer to the rate within 10 %', async () => {
    const limiter = new TokenBucket({ rate });
    const start = performance.now();
    const bytes = await consume(limiter, 64 * 1024, start + window);
    const elapsed = (performance.now() - start) / 1000;
    const measured = (bytes - limiter.burst) / elapsed;
    expect(measured / rate).toBeGreaterThan(0.9);
    expect(measured / rate).toBeLessThan(1.1);
  });

  it('shares the rate evenly between two consumers', async () => {
    const limiter = new TokenBucket({ rate });
    const start = performance.now();
    const [a, b] = await Promise.all([
      consume(limiter, 64 * 1024, start + window),
      consume(limiter, 64 * 1024, start + window),
    ]);
    const elapsed = (performance.now() - start) / 1000;
    expect((a + b - limiter.burst) / elapsed / rate).toBeGreaterThan(0.9);
    expect((a + b - limiter.burst) / elapsed / rate).toBeLessThan(1.1);
    // Whoever comes first may take the initial burst; after it they alternate, chunk by chunk.
    // On a loaded machine a stalled event loop can end one consumer's window a few chunks
    // apart from the other's, so fairness is asserted on the ratio of the totals.
    expect(a / b).toBeGreaterThan(0.8);
    expect(a / b).toBeLessThan(1.25);
  });

  it('throttles a stream', async () => {
    const limiter = new TokenBucket({ rate, burst: 256 * 1024 });
    const data = randomBytes(3 * MiB);
    let received = 0;
    const start = performance.now();
    await pipeline(
      Readable.from([data]),
      createThrottle(limiter),
      new Writable({
        write(chunk: Buffer, _encoding, done) {
          received += chunk.length;
          done();
        },
      }),
    );
    const elapsed = (performance.now() - start) / 1000;
    expect(received).toBe(data.length);
    expect((data.length - limiter.burst) / elapsed / rate).toBeLessThan(1.1);
  });
});

describe('bandwidth limits on connections', () => {
  it('holds two connections sharing one egress limit to the rate, about evenly', async () => {
    const data = randomBytes(16 * MiB);
    const metainfo = new MetainfoBuilder(MiB).update(data).digest();
    const swarm = (have: Bitfield): LocalSwarm => ({
      infoHash: infoHash(metainfo),
      length: metainfo.length,
      pieceLength: metainfo.pieceLength,
      bitfield: have,
    });
    const { egress } = createBandwidth({ egressBytesPerSecond: rate });
    const connect = async () => {
      const [a, b] = duplexPair();
      const seeder = new PeerConnection(a, { peerId: randomBytes(20), egress });
      const leecher = new PeerConnection(b, { peerId: randomBytes(20) });
      await Promise.all([
        seeder.accept(() => swarm(Bitfield.full(16))),
        leecher.handshake(swarm(new Bitfield(16))),
      ]);
      seeder.on('request', (r) => {
        const start = r.index * MiB + r.begin;
        void seeder.sendPiece(r.index, r.begin, data.subarray(start, start + r.length));
      });
      // Keep two requests in flight, cycling through the pieces.
      let next = 0;
      const more = () => {
        while (leecher.pendingRequests < 2 && leecher.request(next % 16)) next += 1;
      };
      leecher.on('piece', (block) => block.done && more());
      return { seeder, leecher, more };
    };
    const one = await connect();
    const two = await connect();
    const start = performance.now();
    one.more();
    two.more();
    await new Promise((r) => setTimeout(r, window));
    const elapsed = (performance.now() - start) / 1000;
    const a = one.leecher.payloadReceived;
    const b = two.leecher.payloadReceived;
    one.leecher.close();
    two.leecher.close();
    // Bytes received lag bytes granted by at most the pair buffers and one block each.
    const measured = (a + b - egress.burst) / elapsed;
    expect(measured / rate).toBeGreaterThan(0.9);
    expect(measured / rate).toBeLessThan(1.1);
    expect(a / b).toBeGreaterThan(0.8);
    expect(a / b).toBeLessThan(1.25);
  });

  it('holds a download to the ingress rate', async () => {
    const data = randomBytes(16 * MiB);
    const metainfo = new MetainfoBuilder(MiB).update(data).digest();
    const swarm = (have: Bitfield): LocalSwarm => ({
      infoHash: infoHash(metainfo),
      length: metainfo.length,
      pieceLength: metainfo.pieceLength,
      bitfield: have,
    });
    const { ingress } = createBandwidth({ ingressBytesPerSecond: rate });
    const [a, b] = duplexPair();
    const seeder = new PeerConnection(a, { peerId: randomBytes(20) });
    const leecher = new PeerConnection(b, { peerId: randomBytes(20), ingress });
    await Promise.all([
      seeder.accept(() => swarm(Bitfield.full(16))),
      leecher.handshake(swarm(new Bitfield(16))),
    ]);
    seeder.on('request', (r) => {
      const start = r.index * MiB + r.begin;
      void seeder.sendPiece(r.index, r.begin, data.subarray(start, start + r.length));
    });
    let next = 0;
    const more = () => {
      while (leecher.pendingRequests < 2 && leecher.request(next % 16)) next += 1;
    };
    leecher.on('piece', (block) => block.done && more());
    const start = performance.now();
    const before = ingress.granted;
    more();
    await new Promise((r) => setTimeout(r, window));
    const elapsed = (performance.now() - start) / 1000;
    const measured = (ingress.granted - before - ingress.burst) / elapsed;
    leecher.close();
    expect(measured / rate).toBeGreaterThan(0.9);
    expect(measured / rate).toBeLessThan(1.1);
    // Reads are charged after the fact: the application is at most one read (≤ 256 KiB) ahead.
    expect(leecher.payloadReceived).toBeLessThanOrEqual(ingress.granted - before + 256 * 1024);
  });
});

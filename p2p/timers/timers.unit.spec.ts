import { randomBytes } from 'node:crypto';
import { Duplex, Readable } from 'node:stream';
import { MetainfoBuilder, pieceBounds } from '../metainfo';
import type { PieceSource } from '../scheduler';
import { BlobScheduler } from '../scheduler';
import { Bitfield, PeerConnection } from '../wire';
import type { Timers } from './timers';
import { systemTimers } from './timers';

/** Timers that move only when told to: what a simulator hands the scheduler. */
const manualTimers = () => {
  let time = 0;
  let nextId = 0;
  const pending = new Map<number, { at: number; every: number | undefined; run: () => void }>();
  const schedule = (ms: number, run: () => void, every: number | undefined) => {
    const id = (nextId += 1);
    pending.set(id, { at: time + ms, every, run });
    return () => void pending.delete(id);
  };
  const timers: Timers & { advance(ms: number): void; readonly count: number } = {
    now: () => time,
    after: (ms, run) => schedule(ms, run, undefined),
    every: (ms, run) => schedule(ms, run, ms),
    advance(ms: number) {
      const end = time + ms;
      for (;;) {
        const due = [...pending.entries()]
          .filter(([, t]) => t.at <= end)
          .sort((a, b) => a[1].at - b[1].at)[0];
        if (due === undefined) break;
        const [id, timer] = due;
        time = timer.at;
        if (timer.every === undefined) pending.delete(id);
        else timer.at += timer.every;
        timer.run();
      }
      time = end;
    },
    get count() {
      return pending.size;
    },
  };
  return timers;
};

/** A complete blob held in memory, served from a buffer. */
const completeSource = (data: Buffer, pieceLength: number) => {
  const metainfo = new MetainfoBuilder(pieceLength).update(data).digest();
  const count = metainfo.pieceHashes.length;
  const source: PieceSource = {
    pieceCount: count,
    complete: true,
    count,
    has: (index) => index >= 0 && index < count,
    bitfield: () => Bitfield.full(count),
    pieceSize: (index) => {
      const { start, end } = pieceBounds(metainfo, index);
      return end - start;
    },
    createReadStream: (index) => {
      const { start, end } = pieceBounds(metainfo, index);
      return Readable.from([data.subarray(start, end)]);
    },
  };
  return { metainfo, source };
};

/** A stream that swallows writes and never sends anything. */
const silentStream = () =>
  new Duplex({
    read() {},
    write(_chunk, _encoding, done) {
      done();
    },
  });

describe('the Timers port', () => {
  it('system timers fire once, repeat, and can be cancelled', async () => {
    const fired: string[] = [];
    const cancelled = systemTimers.after(1, () => fired.push('cancelled'));
    cancelled();
    systemTimers.after(1, () => fired.push('once'));
    let ticks = 0;
    const stop = systemTimers.every(1, () => (ticks += 1));
    await new Promise((resolve) => setTimeout(resolve, 30));
    stop();
    const seen = ticks;
    await new Promise((resolve) => setTimeout(resolve, 10));
    expect(fired).toEqual(['once']);
    expect(seen).toBeGreaterThan(1);
    expect(ticks).toBe(seen);
    expect(systemTimers.now()).toBeGreaterThan(0);
  });

  it("drives the scheduler's tick: seeding ends when simulated time says so", () => {
    const timers = manualTimers();
    const { metainfo, source } = completeSource(randomBytes(1000), 256);
    const closes: string[] = [];
    const scheduler = new BlobScheduler({
      metainfo,
      store: source,
      peerId: randomBytes(20),
      config: { tickMs: 100, seedTimeMs: 5000 },
      timers,
      onClose: (reason) => closes.push(reason),
    });
    expect(scheduler.state).toBe('seeding');
    expect(timers.count).toBe(1);
    timers.advance(5000);
    expect(scheduler.state).toBe('seeding');
    timers.advance(200);
    expect(scheduler.state).toBe('closed');
    expect(closes).toEqual(['seeding time over']);
    expect(timers.count).toBe(0);
  });

  it("drives a connection's handshake timeout with simulated time", async () => {
    const timers = manualTimers();
    const conn = new PeerConnection(silentStream(), {
      peerId: randomBytes(20),
      handshakeTimeoutMs: 1000,
      timers,
    });
    const result = conn.accept(() => undefined);
    timers.advance(999);
    expect(conn.closed).toBe(false);
    timers.advance(1);
    const settled = await result;
    expect(settled.ok).toBe(false);
    expect(conn.closeReason?.kind).toBe('handshake-timeout');
  });
});

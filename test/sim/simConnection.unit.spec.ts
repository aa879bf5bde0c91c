import { Bitfield, wireDefaults } from '../../p2p/wire';
import type { LocalSwarm } from '../../p2p/wire';
import { SimEngine } from './engine';
import { Network } from './network';
import { SimConnection } from './simConnection';

/*
 * `have`s between simulated agents travel as the frame writer sends them: with the next
 * message to the peer, or as one batch `haveDelayMs` after the first of them. A batch costs
 * no event of its own, so these check the arrival times against the wire's rule.
 */

const latencyMs = 0.5;
const delay = wireDefaults.haveDelayMs;

const open = async () => {
  const engine = new SimEngine({ gridMs: 0.05 });
  const host = { up: 1e9, down: 1e9, zone: 0, burstUp: 0, burstDown: 0 };
  const network = new Network(engine, [host, host], {
    stepMs: 5,
    blockEveryMs: 50,
    latencyMs,
    interZoneLatencyMs: latencyMs,
    allocation: 'exact',
    passes: 0,
  });
  const swarm: LocalSwarm = {
    infoHash: 'a'.repeat(64),
    length: 64 * 1024 * 1024,
    pieceLength: 1024 * 1024,
    bitfield: new Bitfield(64),
  };
  const [dialer, acceptor] = SimConnection.pair(
    { engine, network },
    { host: 0, peerId: Buffer.alloc(20, 1), origin: false },
    { host: 1, peerId: Buffer.alloc(20, 2), origin: false },
  );
  /** Runs the calendar up to `ms` (the clock stops at the last event otherwise). */
  const runTo = async (ms: number) => {
    engine.at(ms, () => {});
    await engine.run({ untilMs: ms });
  };
  const accepted = acceptor.accept(async () => swarm);
  const dialed = dialer.handshake(swarm);
  await runTo(10);
  expect((await dialed).ok && (await accepted).ok).toBe(true);
  /** Pieces the acceptor heard of, with the simulated time each arrived. */
  const heard: Array<[number, number]> = [];
  acceptor.on('have', (index) => heard.push([index, engine.now]));
  /** Requests the acceptor got: piece, time, and how many haves it had heard by then. */
  const requests: Array<[number, number, number]> = [];
  acceptor.on('request', (request) => requests.push([request.index, engine.now, heard.length]));
  return { engine, dialer, heard, requests, runTo };
};

describe('have batches in the simulator', () => {
  it('arrive as one batch a delay and a latency after the first have', async () => {
    const { engine, dialer, heard, runTo } = await open();
    const start = engine.now;
    dialer.sendHave(1);
    await runTo(start + 30);
    dialer.sendHave(2);
    await runTo(start + 500);
    expect(heard.map(([index]) => index)).toEqual([1, 2]);
    for (const [, at] of heard) expect(at).toBeCloseTo(start + delay + latencyMs, 6);
  });

  it('go along with the next message, before it', async () => {
    const { engine, dialer, heard, requests, runTo } = await open();
    const start = engine.now;
    dialer.sendHave(3);
    dialer.sendHave(4);
    await runTo(start + 20);
    expect(dialer.request(9)).toBe(true);
    await runTo(start + 500);
    expect(heard.map(([index]) => index)).toEqual([3, 4]);
    const arrived = start + 20 + latencyMs;
    for (const [, at] of heard) expect(at).toBeCloseTo(arrived, 1);
    // The request arrived with them, after them.
    expect(requests).toEqual([[9, heard[0]?.[1], 2]]);
  });

  it('keep a batch whose delay ran out apart from the haves queued after it', async () => {
    const { engine, dialer, heard, runTo } = await open();
    const start = engine.now;
    dialer.sendHave(5);
    // The delay runs out at start + delay; the batch is on its way for a latency.
    await runTo(start + delay + latencyMs / 2);
    dialer.sendHave(6);
    // A message sent now takes 6 along, but not 5 (already sent on its own).
    expect(dialer.request(10)).toBe(true);
    await runTo(start + 3 * delay);
    expect(heard.map(([index]) => index)).toEqual([5, 6]);
    expect(heard[0]?.[1]).toBeCloseTo(start + delay + latencyMs, 6);
    expect(heard[1]?.[1]).toBeGreaterThan(heard[0]?.[1] as number);
    expect(heard[1]?.[1]).toBeLessThan(start + delay + 2 * latencyMs);
  });

  it('start a new batch when haves are queued while the last one travels', async () => {
    const { engine, dialer, heard, runTo } = await open();
    const start = engine.now;
    dialer.sendHave(7);
    await runTo(start + delay + latencyMs / 2);
    const second = engine.now;
    dialer.sendHave(8);
    await runTo(start + 4 * delay);
    expect(heard.map(([index]) => index)).toEqual([7, 8]);
    expect(heard[0]?.[1]).toBeCloseTo(start + delay + latencyMs, 6);
    expect(heard[1]?.[1]).toBeCloseTo(second + delay + latencyMs, 6);
  });
});

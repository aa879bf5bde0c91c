import { SimEngine } from './engine';
import type { Flows } from './network';
import { exactMaxMin, iterativeMaxMin, Network, ProgressiveFilling } from './network';
import { seededRandom } from './random';

const flowsOf = (pairs: Array<[number, number]>): Flows => ({
  count: pairs.length,
  slots: Int32Array.from(pairs.map((_, i) => i)),
  a: Int32Array.from(pairs.map(([a]) => a)),
  b: Int32Array.from(pairs.map(([, b]) => b)),
  c: Int32Array.from(pairs.map(() => -1)),
  d: Int32Array.from(pairs.map(() => -1)),
});

describe('the network model', () => {
  it('given flows over shared links, exact max-min gives each its fair share', () => {
    // Resources 0, 1 (uplinks, 10 and 4), 2 (a downlink, 9).
    const cap = Float64Array.of(10, 4, 9);
    const rates = exactMaxMin(
      cap,
      flowsOf([
        [0, 2],
        [1, 2],
        [0, 2],
      ]),
    );
    // The downlink splits 9 three ways, but flow 1 has only 4 / 1 = 4 ≥ 3: all get 3.
    expect([...rates]).toEqual([3, 3, 3]);
    const tight = exactMaxMin(
      Float64Array.of(10, 1, 9),
      flowsOf([
        [0, 2],
        [1, 2],
        [0, 2],
      ]),
    );
    // Flow 1 is held to 1 by its uplink; the other two share the downlink's 8.
    expect([...tight]).toEqual([4, 1, 4]);
  });

  it('the iterative approximation (8 rounds) carries within 2 % of exact and never overcommits', () => {
    const random = seededRandom(3);
    const hosts = 60;
    const cap = Float64Array.from({ length: 2 * hosts }, () => 1 + random() * 4);
    const pairs: Array<[number, number]> = Array.from({ length: 400 }, () => [
      Math.floor(random() * hosts),
      hosts + Math.floor(random() * hosts),
    ]);
    const exact = exactMaxMin(cap, flowsOf(pairs));
    // The heap version is exact too.
    expect([...new ProgressiveFilling().allocate(cap, flowsOf(pairs)).slice(0, 400)]).toEqual([
      ...exact,
    ]);
    const approx = iterativeMaxMin(cap, flowsOf(pairs), 8);
    const total = (r: Float64Array) => r.reduce((a, b) => a + b, 0);
    expect(Math.abs(total(approx) - total(exact)) / total(exact)).toBeLessThan(0.02);
    const load = new Float64Array(cap.length);
    pairs.forEach(([a, b], i) => {
      load[a] = (load[a] as number) + (approx[i] as number);
      load[b] = (load[b] as number) + (approx[i] as number);
    });
    load.forEach((l, r) => expect(l).toBeLessThanOrEqual((cap[r] as number) * (1 + 1e-9)));
  });

  it('sends one response at its host pair’s rate, whole and on time', async () => {
    const engine = new SimEngine();
    const network = new Network(
      engine,
      [
        { up: 1e6, down: 1e6, zone: 0, burstUp: 0, burstDown: 0 },
        { up: 1e6, down: 4e5, zone: 0, burstUp: 0, burstDown: 0 },
      ],
      {
        stepMs: 1,
        blockEveryMs: 50,
        latencyMs: 0.5,
        interZoneLatencyMs: 0.5,
        allocation: 'exact',
        passes: 4,
      },
    );
    const blocks: number[] = [];
    let doneAt = -1;
    network.send(network.stream(0, 1), {
      length: 200_000,
      onBlock: (bytes) => blocks.push(bytes),
      onDone: (sent) => {
        if (sent) doneAt = engine.now;
      },
    });
    await engine.run();
    // 200 kB at the receiver's 400 kB/s: half a second.
    expect(doneAt).toBeCloseTo(500, 0);
    expect(blocks.reduce((a, b) => a + b, 0)).toBeCloseTo(200_000, 3);
    expect(blocks.length).toBeGreaterThan(2);
  });
});

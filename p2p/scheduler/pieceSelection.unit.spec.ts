import { pickRarest, requestTimeoutOf, slotPolicy } from './pieceSelection';

describe('pickRarest', () => {
  const counter = (values: number[]) => (index: number) => values[index] ?? 0;

  it('given availability, picks the rarest eligible pieces first', () => {
    const picks = pickRarest({
      count: 2,
      pieceCount: 5,
      rank: counter([3, 1, 2, 0, 1]),
      eligible: (index) => index !== 3,
      random: () => 0.5,
    });
    expect(picks.sort()).toEqual([1, 4]);
  });

  it('picks the rarest eligible pieces whether or not the caller narrows the candidates', () => {
    const rank = counter([2, 0, 1, 0, 3, 0, 1, 2]);
    const eligible = (index: number) => index % 2 === 1 || index === 2;
    const draw = (candidates?: number[]) => {
      let seed = 7;
      const random = () => {
        seed = (seed * 16807) % 2147483647;
        return (seed - 1) / 2147483646;
      };
      return pickRarest({ count: 3, pieceCount: 8, candidates, rank, eligible, random });
    };
    expect([...draw([1, 2, 3, 5, 7])].sort()).toEqual([1, 3, 5]);
    expect([...draw()].sort()).toEqual([1, 3, 5]);
    // Four: the fourth is the next rank up, after the three rarest.
    const four = pickRarest({ count: 4, pieceCount: 8, rank, eligible, random: () => 0.5 });
    expect(four[3]).toBe(2);
  });

  it('asks eligibility of few candidates: only those that would be picked so far', () => {
    let asked = 0;
    let seed = 11;
    const random = () => {
      seed = (seed * 16807) % 2147483647;
      return (seed - 1) / 2147483646;
    };
    const picks = pickRarest({
      count: 1,
      pieceCount: 1000,
      rank: (index) => (index === 700 ? 0 : 1),
      eligible: () => {
        asked += 1;
        return true;
      },
      random,
    });
    expect(picks).toEqual([700]);
    expect(asked).toBeLessThan(40);
  });

  it('breaks ties uniformly at random', () => {
    let seed = 42;
    const random = () => {
      seed = (seed * 16807) % 2147483647;
      return (seed - 1) / 2147483646;
    };
    const counts = [0, 0, 0, 0];
    for (let run = 0; run < 4000; run += 1) {
      const [pick] = pickRarest({
        count: 1,
        pieceCount: 4,
        rank: () => 1,
        eligible: () => true,
        random,
      });
      counts[pick as number] = (counts[pick as number] ?? 0) + 1;
    }
    for (const count of counts) expect(count).toBeGreaterThan(850);
  });

  it('returns fewer pieces when fewer are eligible, and none twice', () => {
    const picks = pickRarest({
      count: 8,
      pieceCount: 3,
      rank: () => 0,
      eligible: () => true,
      random: Math.random,
    });
    expect(new Set(picks).size).toBe(3);
    expect(
      pickRarest({
        count: 2,
        pieceCount: 3,
        rank: () => 0,
        eligible: () => false,
        random: Math.random,
      }),
    ).toEqual([]);
  });
});

describe('requestTimeoutOf', () => {
  it('is at least the minimum and grows with the piece length', () => {
    expect(requestTimeoutOf(256 * 1024, 4000, 4000)).toBe(4000);
    expect(requestTimeoutOf(4 * 1024 * 1024, 4000, 4000)).toBe(16_000);
  });
});

describe('slotPolicy', () => {
  const base = { max: 5, reservedOutbound: 2, reservedInbound: 1, inbound: 0, outbound: 0 };

  it('keeps slots for dialing out while downloading (Kraken #162)', () => {
    expect(slotPolicy.canAccept({ ...base, inbound: 2, dialing: true })).toBe(true);
    expect(slotPolicy.canAccept({ ...base, inbound: 3, dialing: true })).toBe(false);
    expect(slotPolicy.canDial({ ...base, inbound: 3, dialing: true })).toBe(true);
  });

  it('gives every slot to incoming peers once it no longer dials (seeding, origins)', () => {
    expect(slotPolicy.canAccept({ ...base, inbound: 4, dialing: false })).toBe(true);
    expect(slotPolicy.canAccept({ ...base, inbound: 5, dialing: false })).toBe(false);
    expect(slotPolicy.canDial({ ...base, dialing: false })).toBe(false);
  });

  it('keeps slots for later joiners: dials stop short of the maximum', () => {
    expect(slotPolicy.canDial({ ...base, outbound: 3, dialing: true })).toBe(true);
    expect(slotPolicy.canDial({ ...base, outbound: 4, dialing: true })).toBe(false);
    expect(slotPolicy.canAccept({ ...base, outbound: 4, dialing: true })).toBe(true);
  });
});

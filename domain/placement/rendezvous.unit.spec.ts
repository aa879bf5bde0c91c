import { owners, rankMembers, rendezvousScore } from './rendezvous';

// Deterministic, well-spread keys: digest-shaped strings from a counter.
const digestFor = (i: number) => `sha256:${i.toString(16).padStart(64, '0')}`;
const keys = Array.from({ length: 10_000 }, (_, i) => digestFor(i * 7919 + 13));
const members = (n: number) => Array.from({ length: n }, (_, i) => `origin-${i + 1}`);

describe('rendezvous hashing', () => {
  it('scores with FNV-1a-64 and murmur3 fmix64 (golden values from a reference script)', () => {
    const digest = `sha256:${'ab'.repeat(32)}`;
    expect(rendezvousScore(digest, 'origin-a')).toBe(0x6a86288c77b254afn);
    expect(rendezvousScore(digest, 'origin-b')).toBe(0x46265f4b1f5e43afn);
    expect(rendezvousScore(digest, 'origin-c')).toBe(0x7668287704536322n);
    expect(rankMembers(digest, ['origin-a', 'origin-b', 'origin-c'])).toEqual([
      'origin-c',
      'origin-a',
      'origin-b',
    ]);
  });

  it('is deterministic and ignores the order and duplicates of members', () => {
    const ids = members(5);
    const mismatches = keys.slice(0, 2000).filter((key) => {
      const a = owners(key, ids, 2);
      return (
        owners(key, [...ids].reverse(), 2).join() !== a.join() ||
        owners(key, [...ids, ...ids], 2).join() !== a.join() ||
        new Set(a).size !== 2
      );
    });
    expect(mismatches).toEqual([]);
  });

  it('gives fewer owners than replicas on a small ring and none on an empty one', () => {
    expect(owners(keys[0] as string, ['solo'], 3)).toEqual(['solo']);
    expect(owners(keys[0] as string, [], 2)).toEqual([]);
    expect(owners(keys[0] as string, members(3), 0)).toEqual([]);
  });

  it('spreads digests evenly over the members, as first owner and as replica', () => {
    const ids = members(5);
    const first = new Map<string, number>();
    const any = new Map<string, number>();
    for (const key of keys) {
      const [a, b] = owners(key, ids, 2) as [string, string];
      first.set(a, (first.get(a) ?? 0) + 1);
      for (const id of [a, b]) any.set(id, (any.get(id) ?? 0) + 1);
    }
    const expectedFirst = keys.length / ids.length;
    for (const id of ids) {
      expect(Math.abs((first.get(id) ?? 0) - expectedFirst) / expectedFirst).toBeLessThan(0.05);
      const expectedAny = (keys.length * 2) / ids.length;
      expect(Math.abs((any.get(id) ?? 0) - expectedAny) / expectedAny).toBeLessThan(0.05);
    }
  });

  it('spreads even when ids differ only in their last character', () => {
    const ids = ['o1', 'o2', 'o3', 'o4'];
    const counts = new Map<string, number>();
    for (const key of keys) {
      const [a] = owners(key, ids, 1) as [string];
      counts.set(a, (counts.get(a) ?? 0) + 1);
    }
    for (const id of ids) expect(counts.get(id)).toBeGreaterThan((keys.length / 4) * 0.93);
  });

  it('moves only what the joining origin wins (about R/(N+1) of the digests)', () => {
    const before = members(5);
    const after = [...before, 'origin-new'];
    let moved = 0;
    const violations: string[] = [];
    for (const key of keys) {
      const was = owners(key, before, 2);
      const now = owners(key, after, 2);
      if (now.join() === was.join()) continue;
      moved++;
      // The only change is the newcomer taking a place; the survivors keep their order.
      const survivors = now.filter((id) => id !== 'origin-new');
      const kept = was.filter((id) => now.includes(id));
      if (!now.includes('origin-new') || survivors.join() !== kept.join()) violations.push(key);
    }
    expect(violations).toEqual([]);
    const fraction = moved / keys.length;
    expect(fraction).toBeGreaterThan(2 / 6 - 0.03);
    expect(fraction).toBeLessThan(2 / 6 + 0.03);
  });

  it('moves only what the leaving origin owned', () => {
    const before = members(5);
    const after = before.filter((id) => id !== 'origin-3');
    let moved = 0;
    const violations: string[] = [];
    for (const key of keys) {
      const was = owners(key, before, 2);
      const now = owners(key, after, 2);
      if (!was.includes('origin-3')) {
        if (now.join() !== was.join()) violations.push(key);
        continue;
      }
      moved++;
      // The surviving owner stays an owner; one new one fills the gap.
      if (!was.filter((id) => id !== 'origin-3').every((id) => now.includes(id))) {
        violations.push(key);
      }
    }
    expect(violations).toEqual([]);
    expect(moved / keys.length).toBeCloseTo(2 / 5, 1);
  });

  it('takes another score function', () => {
    const byLength = (_key: string, member: string) => BigInt(member.length);
    expect(owners('k', ['a', 'ccc', 'bb'], 2, byLength)).toEqual(['ccc', 'bb']);
  });
});

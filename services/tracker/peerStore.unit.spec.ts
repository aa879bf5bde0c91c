import { createPeerStore } from './peerStore';

const hash = 'a'.repeat(64);
const peer = (n: number, extra: { origin?: boolean; complete?: boolean } = {}) => ({
  peerId: n.toString(16).padStart(40, '0'),
  address: `10.0.0.${n}:7001`,
  origin: extra.origin ?? false,
  complete: extra.complete ?? false,
  have: 0,
});

describe('the tracker peer store', () => {
  let time: number;
  const store = () => createPeerStore({ ttlMs: 9000, now: () => time });

  beforeEach(() => {
    time = 1_000_000;
  });

  it('given announces, hands out other peers but never the announcer itself', () => {
    const peers = store();
    for (let n = 1; n <= 4; n += 1) peers.announce(hash, peer(n));
    const handout = peers.handout(hash, peer(1).peerId, 10, () => false);
    expect(handout.map((p) => p.address).sort()).toEqual(
      ['10.0.0.2:7001', '10.0.0.3:7001', '10.0.0.4:7001'].sort(),
    );
  });

  it('hands out a random subset of the configured size', () => {
    const peers = store();
    for (let n = 1; n <= 50; n += 1) peers.announce(hash, peer(n));
    const seen = new Set<string>();
    for (let i = 0; i < 20; i += 1) {
      const handout = peers.handout(hash, peer(1).peerId, 10, () => false);
      expect(handout).toHaveLength(10);
      for (const p of handout) seen.add(p.peerId);
    }
    expect(seen.size).toBeGreaterThan(30);
  });

  it('includes origins while few complete agents exist, complete agents first', () => {
    const peers = store();
    peers.announce(hash, peer(1));
    peers.announce(hash, peer(9, { origin: true, complete: true }));
    const fewComplete = (n: number) => n < 2;
    expect(peers.handout(hash, 'x', 10, fewComplete).map((p) => p.origin)).toEqual([true, false]);
    peers.announce(hash, peer(2, { complete: true }));
    peers.announce(hash, peer(3, { complete: true }));
    const handout = peers.handout(hash, 'x', 10, fewComplete);
    expect(handout.some((p) => p.origin)).toBe(false);
    expect(handout.slice(0, 2).every((p) => p.complete)).toBe(true);
  });

  it('drops a peer that stops announcing after the TTL, and at once when it says stopped', () => {
    const peers = store();
    peers.announce(hash, peer(1));
    peers.announce(hash, peer(2));
    time += 5000;
    peers.announce(hash, peer(2));
    time += 5000; // peer 1 last announced 10 s ago, past the 9 s TTL
    expect(peers.handout(hash, 'x', 10, () => false).map((p) => p.peerId)).toEqual([
      peer(2).peerId,
    ]);
    peers.announce(hash, { ...peer(2), stopped: true });
    expect(peers.handout(hash, 'x', 10, () => false)).toEqual([]);
    expect(peers.size()).toEqual({ swarms: 0, peers: 0 });
  });

  it('counts origins and complete agents of a swarm', () => {
    const peers = store();
    peers.announce(hash, peer(1, { complete: true }));
    peers.announce(hash, peer(2));
    peers.announce(hash, peer(3, { origin: true, complete: true }));
    expect(peers.counts(hash)).toEqual({ peers: 3, origins: 1, completeAgents: 1 });
    time += 10_000;
    peers.sweep();
    expect(peers.counts(hash)).toEqual({ peers: 0, origins: 0, completeAgents: 0 });
  });

  it('in a large swarm, hands out distinct agents other than the announcer', () => {
    const peers = store();
    for (let n = 1; n <= 10_000; n += 1) peers.announce(hash, peer(n));
    for (let i = 0; i < 200; i += 1) {
      const handout = peers.handout(hash, peer(1).peerId, 20, () => false);
      expect(handout).toHaveLength(20);
      expect(new Set(handout.map((p) => p.peerId)).size).toBe(20);
      expect(handout.some((p) => p.peerId === peer(1).peerId)).toBe(false);
    }
  });

  it('keeps a re-announced peer past its first deadline, and counts follow every change', () => {
    const peers = store();
    peers.announce(hash, peer(1));
    peers.announce(hash, peer(2, { complete: true }));
    time += 6000;
    peers.announce(hash, peer(1, { complete: true })); // now complete, deadline moved on
    peers.announce(hash, peer(2)); // no longer complete (a restarted agent)
    expect(peers.counts(hash)).toEqual({ peers: 2, origins: 0, completeAgents: 1 });
    time += 4000; // both first deadlines passed; the second ones are 5 s away
    expect(peers.counts(hash)).toEqual({ peers: 2, origins: 0, completeAgents: 1 });
    peers.setInterval(hash, peer(1).peerId, 10_000); // listed for 30 s from now
    time += 6000;
    expect(peers.counts(hash)).toEqual({ peers: 1, origins: 0, completeAgents: 1 });
    expect(peers.handout(hash, 'x', 10, () => false).map((p) => p.peerId)).toEqual([
      peer(1).peerId,
    ]);
    peers.announce(hash, { ...peer(1), stopped: true });
    expect(peers.size()).toEqual({ swarms: 0, peers: 0 });
  });

  describe('with zones', () => {
    const zoned = (n: number, zone: string) => ({ ...peer(n), zone });
    const zoneOf = (id: string) => `zone-${parseInt(id, 16) % 3}`;
    const announceAll = (peers: ReturnType<typeof store>, count: number) => {
      for (let n = 1; n <= count; n += 1) peers.announce(hash, zoned(n, `zone-${n % 3}`));
    };

    it.each([30, 3000])(
      "fills the share from the announcer's zone and the rest from the swarm (%i agents)",
      (count) => {
        const peers = store();
        announceAll(peers, count);
        const self = peer(3).peerId; // zone-0
        let local = 0;
        let handed = 0;
        for (let i = 0; i < 100; i += 1) {
          const handout = peers.handout(hash, self, 10, () => false, {
            name: 'zone-0',
            sameZoneShare: 0.8,
          });
          expect(handout).toHaveLength(10);
          expect(new Set(handout.map((p) => p.peerId)).size).toBe(10);
          expect(handout.some((p) => p.peerId === self)).toBe(false);
          const fromZone = handout.filter((p) => zoneOf(p.peerId) === 'zone-0').length;
          expect(fromZone).toBeGreaterThanOrEqual(8);
          local += fromZone;
          handed += handout.length;
        }
        // The other 2 come from the whole swarm: mostly other zones.
        expect(local / handed).toBeLessThan(0.92);
      },
    );

    it('fills from the whole swarm when the zone is small, and ignores zones at share 0', () => {
      const peers = store();
      announceAll(peers, 60);
      peers.announce(hash, zoned(100, 'lonely'));
      peers.announce(hash, zoned(101, 'lonely'));
      const handout = peers.handout(hash, peer(100).peerId, 10, () => false, {
        name: 'lonely',
        sameZoneShare: 0.8,
      });
      expect(handout).toHaveLength(10);
      expect(handout.filter((p) => p.peerId === peer(101).peerId)).toHaveLength(1);
      let local = 0;
      for (let i = 0; i < 100; i += 1) {
        local += peers
          .handout(hash, peer(3).peerId, 10, () => false, { name: 'zone-0', sameZoneShare: 0 })
          .filter((p) => zoneOf(p.peerId) === 'zone-0').length;
      }
      expect(local / 1000).toBeLessThan(0.5);
    });

    it('follows an agent that moves to another zone, and forgets it when it leaves', () => {
      const peers = store();
      peers.announce(hash, zoned(1, 'a'));
      peers.announce(hash, zoned(2, 'a'));
      peers.announce(hash, zoned(3, 'b'));
      peers.announce(hash, zoned(2, 'b'));
      const fromA = peers.handout(hash, peer(1).peerId, 1, () => false, {
        name: 'a',
        sameZoneShare: 1,
      });
      // Zone a holds only the announcer now: the one peer comes from the whole swarm.
      expect(fromA).toHaveLength(1);
      const fromB = () =>
        peers
          .handout(hash, peer(9).peerId, 2, () => false, { name: 'b', sameZoneShare: 1 })
          .map((p) => p.peerId)
          .sort();
      expect(fromB()).toEqual([peer(2).peerId, peer(3).peerId].sort());
      peers.announce(hash, { ...zoned(2, 'b'), stopped: true });
      expect(fromB()).toEqual([peer(1).peerId, peer(3).peerId].sort());
    });
  });
});

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
});

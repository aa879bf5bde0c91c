import { createSwarmLedger } from './swarmLedger';

const announce = (swarm: number, peer: number, extra: Record<string, unknown> = {}) => ({
  infoHash: swarm.toString(16).padStart(64, '0'),
  digest: `sha256:${swarm.toString(16).padStart(64, 'a')}`,
  peerId: peer.toString(16).padStart(40, '0'),
  address: `127.0.0.${peer}:7001`,
  complete: false,
  have: 0,
  origin: false,
  ...extra,
});

describe('the swarm ledger (what GET /swarms shows)', () => {
  let now = 1_000;
  const ledger = (options: Partial<Parameters<typeof createSwarmLedger>[0]> = {}) =>
    createSwarmLedger({ now: () => now, peerTtlMs: 10_000, ...options });

  beforeEach(() => {
    now = 1_000;
  });

  it('given announces, when one completes, then it keeps progress and the completion time', () => {
    const l = ledger();
    l.record(announce(1, 1, { downloaded: 10, fromOrigins: 10, left: 90 }));
    now = 3_000;
    l.record(
      announce(1, 1, { complete: true, have: 4, downloaded: 100, fromOrigins: 30, left: 0 }),
    );
    const [swarm] = l.list();
    expect(swarm?.peers[0]).toMatchObject({
      complete: true,
      have: 4,
      downloaded: 100,
      fromOrigins: 30,
      left: 0,
      firstSeenAt: 1_000,
      completedAt: 3_000,
      active: true,
    });
  });

  it('a seed that is complete from its first announce has no completion time', () => {
    const l = ledger();
    l.record(announce(1, 9, { complete: true, origin: true, uploaded: 5 }));
    expect(l.list()[0]?.peers[0]?.completedAt).toBeUndefined();
  });

  it('peers that left or went quiet are inactive; the swarm is forgotten after retainMs', () => {
    const l = ledger({ retainMs: 60_000 });
    l.record(announce(1, 1));
    l.record(announce(1, 2));
    l.record(announce(1, 2, { stopped: true }));
    now = 12_000;
    expect(l.list()[0]?.activePeers).toBe(0);
    now = 61_001;
    expect(l.list()).toEqual([]);
  });

  it('is bounded: most recent swarms first, the oldest dropped, peers past the cap counted', () => {
    const l = ledger({ maxSwarms: 2, maxPeersPerSwarm: 2 });
    l.record(announce(1, 1));
    l.record(announce(2, 1));
    l.record(announce(3, 1));
    l.record(announce(3, 2));
    l.record(announce(3, 3));
    const swarms = l.list();
    expect(swarms.map((s) => s.infoHash.slice(-1))).toEqual(['3', '2']);
    expect(swarms[0]?.peers).toHaveLength(2);
    expect(swarms[0]?.omittedPeers).toBe(1);
    expect(l.list(1)).toHaveLength(1);
  });
});

import { answerAnnounce, wantsOriginJoin } from './announcePolicy';
import { createPeerStore } from './peerStore';

const hash = 'b'.repeat(64);
const config = { intervalMs: 3000, emptyIntervalMs: 500, handoutSize: 2, originsBelowComplete: 1 };
const request = (n: number, extra: { origin?: boolean; complete?: boolean } = {}) => ({
  infoHash: hash,
  digest: `sha256:${'c'.repeat(64)}`,
  peerId: n.toString(16).padStart(40, '0'),
  address: `10.0.0.${n}:7001`,
  origin: extra.origin ?? false,
  complete: extra.complete ?? false,
  have: 0,
});

describe("the tracker's announce policy", () => {
  const store = () => createPeerStore({ ttlMs: 9000, now: () => 0, random: () => 0.5 });

  it('given a swarm without origins, an incomplete agent wants the owners to join', () => {
    const peers = store();
    peers.announce(hash, request(1));
    expect(wantsOriginJoin(peers, request(1), config)).toBe(true);
    expect(wantsOriginJoin(peers, request(1, { complete: true }), config)).toBe(false);
    peers.announce(hash, request(9, { origin: true, complete: true }));
    expect(wantsOriginJoin(peers, request(1), config)).toBe(false);
  });

  it('answers the first agent with an empty handout and the short interval', () => {
    const peers = store();
    peers.announce(hash, request(1));
    expect(answerAnnounce(peers, request(1), config)).toEqual({ peers: [], intervalMs: 500 });
  });

  it('hands out origins only while fewer complete agents than the threshold exist', () => {
    const peers = store();
    peers.announce(hash, request(9, { origin: true, complete: true }));
    peers.announce(hash, request(1));
    const before = answerAnnounce(peers, request(1), config);
    expect(before.peers.map((p) => p.origin)).toEqual([true]);
    expect(before.intervalMs).toBe(3000);
    peers.announce(hash, request(2, { complete: true }));
    const after = answerAnnounce(peers, request(1), config);
    expect(after.peers.map((p) => p.peerId)).toEqual([request(2).peerId]);
  });

  it('answers complete and stopping peers with nothing', () => {
    const peers = store();
    peers.announce(hash, request(1));
    peers.announce(hash, request(2));
    expect(answerAnnounce(peers, request(2, { complete: true }), config).peers).toEqual([]);
    expect(answerAnnounce(peers, { ...request(2), stopped: true }, config).peers).toEqual([]);
  });

  it('backs announce intervals off once a peer has peers, up to the longest', () => {
    const peers = store();
    const backOff = { ...config, maxIntervalMs: 10_000 };
    peers.announce(hash, request(1));
    expect(answerAnnounce(peers, request(1), backOff).intervalMs).toBe(500);
    peers.announce(hash, request(2));
    const intervals = [1, 2, 3, 4].map(() => {
      peers.announce(hash, request(1));
      return answerAnnounce(peers, request(1), backOff).intervalMs;
    });
    expect(intervals).toEqual([3000, 6000, 10_000, 10_000]);
    // Complete peers (and origins) need nobody: the longest interval at once; absent a
    // setting, four times the base interval.
    expect(answerAnnounce(peers, request(2, { complete: true }), backOff).intervalMs).toBe(10_000);
    expect(answerAnnounce(peers, request(2, { complete: true }), config).intervalMs).toBe(12_000);
    // The peer stays listed for three of its intervals, beyond the TTL.
    expect(peers.intervalOf(hash, request(1).peerId)).toBe(10_000);
  });
});

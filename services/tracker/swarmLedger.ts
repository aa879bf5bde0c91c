import type { Announcement } from '../../p2p/swarm';
import type { SwarmPeerView, SwarmView } from './client/trackerStatusClient';

export type SwarmStatus = SwarmView;

type Mutable<T> = { -readonly [K in keyof T]: T[K] };
type MutablePeer = Mutable<Omit<SwarmPeerView, 'active'>>;
type Ledger = {
  infoHash: string;
  digest: string;
  firstSeenAt: number;
  lastSeenAt: number;
  omittedPeers: number;
  peers: Map<string, MutablePeer>;
};

/**
 * What the tracker heard of each swarm, kept for people (the console's live swarms page),
 * apart from the peer store the handouts are made from: per swarm, each peer's progress from
 * its announces, when it completed and when it left. Bounded: at most `maxSwarms` swarms (the
 * least recently heard of dropped first) of at most `maxPeersPerSwarm` peers each, and a
 * swarm is forgotten `retainMs` after its last announce, so completions stay visible a while
 * after the peers left. Nothing here changes what the tracker answers.
 */
export const createSwarmLedger = (options: {
  now: () => number;
  maxSwarms?: number;
  maxPeersPerSwarm?: number;
  retainMs?: number;
  /** A peer not heard from for this long counts as gone (the tracker's peer TTL). */
  peerTtlMs?: number;
}) => {
  const peerTtlMs = options.peerTtlMs ?? 60_000;
  const maxSwarms = options.maxSwarms ?? 256;
  const maxPeers = options.maxPeersPerSwarm ?? 256;
  const retainMs = options.retainMs ?? 10 * 60_000;
  /** In order of the last announce heard: the oldest first. */
  const swarms = new Map<string, Ledger>();

  const forgetOld = (now: number) => {
    for (const [infoHash, swarm] of swarms) {
      if (swarm.lastSeenAt + retainMs > now && swarms.size <= maxSwarms) break;
      swarms.delete(infoHash);
    }
  };

  return {
    /** Records what one announce says. */
    record(announce: Announcement): void {
      const now = options.now();
      let swarm = swarms.get(announce.infoHash);
      if (swarm === undefined) {
        swarm = {
          infoHash: announce.infoHash,
          digest: announce.digest,
          firstSeenAt: now,
          lastSeenAt: now,
          omittedPeers: 0,
          peers: new Map(),
        };
      }
      // Re-insert: the map's order is the order of the last announce.
      swarms.delete(announce.infoHash);
      swarms.set(announce.infoHash, swarm);
      swarm.lastSeenAt = now;
      let peer = swarm.peers.get(announce.peerId);
      if (peer === undefined) {
        if (swarm.peers.size >= maxPeers) {
          swarm.omittedPeers += 1;
          forgetOld(now);
          return;
        }
        peer = {
          peerId: announce.peerId,
          address: announce.address,
          origin: announce.origin,
          complete: announce.complete,
          have: announce.have,
          firstSeenAt: now,
          lastSeenAt: now,
        };
        swarm.peers.set(announce.peerId, peer);
      }
      if (!peer.complete && announce.complete && peer.completedAt === undefined) {
        peer.completedAt = now;
      }
      peer.address = announce.address;
      peer.complete = announce.complete;
      peer.have = announce.have;
      peer.lastSeenAt = now;
      for (const field of ['downloaded', 'fromOrigins', 'uploaded', 'left'] as const) {
        const value = announce[field];
        if (value !== undefined) peer[field] = value;
      }
      if (announce.stopped) peer.stoppedAt = now;
      else delete peer.stoppedAt;
      forgetOld(now);
    },

    /** Swarms heard of most recently first, at most `limit`. */
    list(limit = maxSwarms): SwarmStatus[] {
      const now = options.now();
      forgetOld(now);
      const out: SwarmStatus[] = [];
      for (const swarm of [...swarms.values()].reverse()) {
        if (out.length >= limit) break;
        const peers = [...swarm.peers.values()].map((peer) => ({
          ...peer,
          active: peer.stoppedAt === undefined && peer.lastSeenAt + peerTtlMs > now,
        }));
        out.push({
          infoHash: swarm.infoHash,
          digest: swarm.digest,
          firstSeenAt: swarm.firstSeenAt,
          lastSeenAt: swarm.lastSeenAt,
          activePeers: peers.filter((peer) => peer.active).length,
          omittedPeers: swarm.omittedPeers,
          peers,
        });
      }
      return out;
    },
  };
};

export type SwarmLedger = ReturnType<typeof createSwarmLedger>;

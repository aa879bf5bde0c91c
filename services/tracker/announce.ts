import type { Announcement } from '../../p2p/swarm';
import type { Logger } from '../shared/logger';
import type { OriginDirectory } from './originDirectory';
import type { HandoutPeer, PeerStore } from './peerStore';

export type AnnounceResult = { readonly peers: HandoutPeer[]; readonly intervalMs: number };

/**
 * Handles one announce: records the peer, and answers an incomplete agent with a random
 * subset of the swarm (origins included while few complete agents exist). When a swarm that
 * needs origins has none, the owning origins are asked to join it (at most once per
 * `originJoinRetryMs` per swarm): that is how origins learn a swarm started, and how a
 * swarm re-forms on another tracker after this one's restart or loss.
 *
 * Announce intervals back off once a peer is established: a peer's first answer with peers
 * says `intervalMs`, each next one twice the last, up to `maxIntervalMs`; complete peers and
 * origins (listed for others, needing nobody) get `maxIntervalMs` at once, and an answer
 * without peers `emptyIntervalMs`. A connected agent keeps the peers it was handed (and is
 * dialed by later joiners), so announces every second of a long download were only load:
 * the tracker's HTTP handling and the agents' requests. Peers stay listed for three of
 * their intervals.
 */
export const createAnnounceHandler = (deps: {
  peers: PeerStore;
  origins: OriginDirectory;
  /** The URL origins announce to. */
  selfUrl: () => string;
  config: {
    intervalMs: number;
    /** Longest interval handed out; 0: four times `intervalMs`. */
    maxIntervalMs: number;
    emptyIntervalMs: number;
    handoutSize: number;
    originsBelowComplete: number;
    originJoinTimeoutMs: number;
    originJoinRetryMs: number;
  };
  now: () => number;
  logger: Logger;
}) => {
  const { peers, config } = deps;
  const lastJoin = new Map<string, number>();
  const joining = new Map<string, Promise<void>>();

  const needsOrigins = (completeAgents: number) => completeAgents < config.originsBelowComplete;

  const joinOrigins = (request: Announcement): Promise<void> => {
    let pending = joining.get(request.infoHash);
    if (pending !== undefined) return pending;
    const last = lastJoin.get(request.infoHash);
    if (last !== undefined && deps.now() - last < config.originJoinRetryMs) {
      return Promise.resolve();
    }
    lastJoin.set(request.infoHash, deps.now());
    if (lastJoin.size > 100_000) lastJoin.clear();
    pending = (async () => {
      const joined = await deps.origins.join(request.digest, deps.selfUrl()).catch((error) => {
        deps.logger.warn({ err: error, digest: request.digest }, 'cannot ask origins to join');
        return [];
      });
      for (const origin of joined) {
        if (origin.infoHash !== request.infoHash) continue;
        peers.announce(request.infoHash, {
          peerId: origin.peerId,
          address: origin.address,
          origin: true,
          complete: true,
          have: 0,
        });
      }
    })().finally(() => joining.delete(request.infoHash));
    joining.set(request.infoHash, pending);
    return pending;
  };

  const withTimeout = (work: Promise<void>, ms: number) =>
    Promise.race([work, new Promise<void>((resolve) => setTimeout(resolve, ms).unref())]);

  const maxIntervalMs = Math.max(
    config.intervalMs,
    config.maxIntervalMs > 0 ? config.maxIntervalMs : 4 * config.intervalMs,
  );
  /** Records and returns the interval handed to the announcer. */
  const answer = (request: Announcement, handout: HandoutPeer[], intervalMs: number) => {
    peers.setInterval(request.infoHash, request.peerId, intervalMs);
    return { peers: handout, intervalMs };
  };

  return async (request: Announcement): Promise<AnnounceResult> => {
    const previous = peers.intervalOf(request.infoHash, request.peerId);
    peers.announce(request.infoHash, request);
    if (request.stopped) return { peers: [], intervalMs: config.intervalMs };
    if (request.complete) return answer(request, [], maxIntervalMs);
    const counts = peers.counts(request.infoHash);
    if (!request.origin && counts.origins === 0 && needsOrigins(counts.completeAgents)) {
      await withTimeout(joinOrigins(request), config.originJoinTimeoutMs);
    }
    const handout = peers.handout(
      request.infoHash,
      request.peerId,
      config.handoutSize,
      needsOrigins,
    );
    if (handout.length === 0) return answer(request, handout, config.emptyIntervalMs);
    const next = previous === undefined ? config.intervalMs : Math.min(2 * previous, maxIntervalMs);
    return answer(request, handout, Math.max(config.intervalMs, next));
  };
};

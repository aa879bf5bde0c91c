import type { Announcement } from '../../p2p/swarm';
import type { Timers } from '../../p2p/timers';
import { systemTimers } from '../../p2p/timers';
import type { Logger } from '../shared/logger';
import type { AnnouncePolicyConfig } from './announcePolicy';
import { answerAnnounce, wantsOriginJoin } from './announcePolicy';
import type { OriginDirectory } from './originDirectory';
import type { HandoutPeer, PeerStore } from './peerStore';

export type AnnounceResult = { readonly peers: HandoutPeer[]; readonly intervalMs: number };

/**
 * Handles one announce: records the peer, and answers it by the tracker's policy
 * (`announcePolicy.ts`: a random subset of the swarm, origins while few agents are complete). When a swarm that
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
  /** Only `join` is used: asking a blob's owners to join its swarm. */
  origins: Pick<OriginDirectory, 'join'>;
  /** The URL origins announce to. */
  selfUrl: () => string;
  config: AnnouncePolicyConfig & {
    originJoinTimeoutMs: number;
    originJoinRetryMs: number;
  };
  now: () => number;
  logger: Logger;
  /** How long an announce waits for the origins is timed on these (default: the system's). */
  timers?: Timers;
}) => {
  const { peers, config } = deps;
  const lastJoin = new Map<string, number>();
  const joining = new Map<string, Promise<void>>();

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

  const timers = deps.timers ?? systemTimers;
  const withTimeout = (work: Promise<void>, ms: number) =>
    Promise.race([work, new Promise<void>((resolve) => timers.after(ms, resolve))]);

  return async (request: Announcement): Promise<AnnounceResult> => {
    peers.announce(request.infoHash, request);
    if (wantsOriginJoin(peers, request, config)) {
      await withTimeout(joinOrigins(request), config.originJoinTimeoutMs);
    }
    return answerAnnounce(peers, request, config);
  };
};

import { createJsonClient } from '../../shared/httpClient';
import type { ClientIdentity } from '../../shared/security/clientIdentity';

/**
 * One peer of a swarm as a tracker last heard of it (`GET /swarms`), for people to look at.
 * Times are milliseconds since the epoch.
 */
export type SwarmPeerView = {
  readonly peerId: string;
  readonly address: string;
  readonly origin: boolean;
  readonly complete: boolean;
  /** Pieces it holds. */
  readonly have: number;
  /** Bytes of verified pieces this peer fetched in this swarm, of them from origins. */
  readonly downloaded?: number;
  readonly fromOrigins?: number;
  /** Bytes it sent to other peers (an origin's egress to the swarm). */
  readonly uploaded?: number;
  /** Bytes it still lacks (to within one piece). */
  readonly left?: number;
  readonly firstSeenAt: number;
  readonly lastSeenAt: number;
  /** When the tracker first heard it complete after hearing it incomplete. */
  readonly completedAt?: number;
  /** When it left (announced `stopped`). */
  readonly stoppedAt?: number;
  /** Not left, and heard from within the peer TTL. */
  readonly active: boolean;
};

/** One swarm as a tracker reports it: its peers, most recently heard of last. */
export type SwarmView = {
  readonly infoHash: string;
  readonly digest: string;
  readonly firstSeenAt: number;
  readonly lastSeenAt: number;
  /** Peers that are active. */
  readonly activePeers: number;
  /** Peers heard of beyond the tracker's per-swarm cap, not listed. */
  readonly omittedPeers: number;
  readonly peers: readonly SwarmPeerView[];
};

/**
 * Read-only client of one tracker's swarm status (`GET /swarms`), for the console: what the
 * tracker heard of its swarms, most recent first. Errors as the service client's (an
 * unreachable tracker is `SERVICE_UNAVAILABLE`).
 */
export const createTrackerStatusClient = (
  url: string,
  options: { timeoutMs?: number; identity?: ClientIdentity } = {},
) => {
  const call = createJsonClient(url, {
    timeoutMs: options.timeoutMs ?? 5000,
    ...(options.identity !== undefined && { identity: options.identity }),
  });
  return {
    url,
    swarms: async (limit = 100): Promise<{ at: string; swarms: SwarmView[] }> =>
      (await call<{ at: string; swarms: SwarmView[] }>('GET', `/swarms?limit=${limit}`)).body,
  };
};

export type TrackerStatusClient = ReturnType<typeof createTrackerStatusClient>;

import type { PeerCandidate } from '../scheduler';

/** What a peer tells the tracker about one blob (`POST /announce`). */
export type Announcement = {
  /** Lowercase hex info hash of the metainfo. */
  readonly infoHash: string;
  readonly digest: string;
  /** Lowercase hex peer id. */
  readonly peerId: string;
  /** `host:port` of the announcer's peer port. */
  readonly address: string;
  readonly complete: boolean;
  /** Pieces it holds. */
  readonly have: number;
  readonly origin: boolean;
  /**
   * The announcer's zone (a rack, a data hall, a cloud zone: any label its operator chose),
   * or absent. The tracker fills most of a handout from the same zone, so a swarm keeps its
   * traffic off the links between zones.
   */
  readonly zone?: string;
  /**
   * Progress, for people watching the swarm (the tracker keeps it for its swarm-status
   * endpoint; it changes no handout): bytes of verified pieces fetched in this swarm, of
   * them from origins, bytes sent to peers, and bytes still missing (to within one piece).
   */
  readonly downloaded?: number;
  readonly fromOrigins?: number;
  readonly uploaded?: number;
  readonly left?: number;
  /** It leaves the swarm: forget it now rather than after the TTL. */
  readonly stopped?: boolean;
};

/** The tracker's answer: peers to dial and when to announce again. */
export type AnnounceAnswer = {
  readonly peers: readonly PeerCandidate[];
  readonly intervalMs: number;
};

/**
 * The port to a tracker (the agent implements it over HTTP, choosing the tracker by
 * rendezvous hash of the digest; tests over memory). Rejects when no tracker answers.
 */
export interface Announcer {
  announce(announcement: Announcement): Promise<AnnounceAnswer>;
}

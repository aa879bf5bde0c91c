import type { Announcement } from '../../p2p/swarm';
import type { AnnounceResult } from './announce';
import type { PeerStore } from './peerStore';

/** The settings the tracker's answers follow (`announce.*` in its YAML). */
export type AnnouncePolicyConfig = {
  readonly intervalMs: number;
  /** Longest interval handed out; 0 or absent: four times `intervalMs`. */
  readonly maxIntervalMs?: number;
  readonly emptyIntervalMs: number;
  readonly handoutSize: number;
  /** Share of a handout from the announcer's zone (0: zones ignored; absent: 0). */
  readonly sameZoneShare?: number;
  readonly originsBelowComplete: number;
};

/** Origins are handed out while fewer than `originsBelowComplete` agents are complete. */
export const needsOrigins = (config: AnnouncePolicyConfig, completeAgents: number): boolean =>
  completeAgents < config.originsBelowComplete;

/**
 * Whether an announce (already recorded in `peers`) should make the tracker ask the blob's
 * owning origins to join its swarm: an incomplete agent's, in a swarm that has no origin and
 * still needs one. Pure, over the peer store's soft state.
 */
export const wantsOriginJoin = (
  peers: PeerStore,
  request: Announcement,
  config: AnnouncePolicyConfig,
): boolean => {
  if (request.stopped || request.complete || request.origin) return false;
  const counts = peers.counts(request.infoHash);
  return counts.origins === 0 && needsOrigins(config, counts.completeAgents);
};

/** The longest interval the tracker hands out (complete peers get it at once). */
export const maxIntervalOf = (config: AnnouncePolicyConfig): number =>
  Math.max(
    config.intervalMs,
    (config.maxIntervalMs ?? 0) > 0 ? (config.maxIntervalMs as number) : 4 * config.intervalMs,
  );

/**
 * The tracker's answer to an announce already recorded in `peers`: nothing for a stopping
 * peer; no peers and the longest interval for a complete one; otherwise a random subset of
 * `handoutSize` other agents (`sameZoneShare` of them from the announcer's zone, when it
 * named one and the zone has enough), complete ones first, then origins (while the swarm needs them),
 * then the rest. The interval to announce again is `emptyIntervalMs` while the swarm is
 * forming, then doubles from `intervalMs` up to `maxIntervalMs` on each answer with peers: a
 * peer with peers needs the tracker less and less. The interval handed out is recorded in the
 * peer store, which keeps the peer listed for three of them. The peer-selection rule every
 * tracker runs, and the simulator with it (`test/sim`).
 */
export const answerAnnounce = (
  peers: PeerStore,
  request: Announcement,
  config: AnnouncePolicyConfig,
): AnnounceResult => {
  if (request.stopped) return { peers: [], intervalMs: config.intervalMs };
  const answer = (handout: AnnounceResult['peers'], intervalMs: number): AnnounceResult => {
    peers.setInterval(request.infoHash, request.peerId, intervalMs);
    return { peers: handout, intervalMs };
  };
  const maxIntervalMs = maxIntervalOf(config);
  if (request.complete) return answer([], maxIntervalMs);
  const handout = peers.handout(
    request.infoHash,
    request.peerId,
    config.handoutSize,
    (n) => needsOrigins(config, n),
    { name: request.zone, sameZoneShare: config.sameZoneShare ?? 0 },
  );
  if (handout.length === 0) return answer(handout, config.emptyIntervalMs);
  const previous = peers.intervalOf(request.infoHash, request.peerId);
  const next = previous === undefined ? config.intervalMs : Math.min(2 * previous, maxIntervalMs);
  return answer(handout, Math.max(config.intervalMs, next));
};

import type { Announcement } from '../../p2p/swarm';
import type { AnnounceResult } from './announce';
import type { PeerStore } from './peerStore';

/** The settings the tracker's answers follow (`announce.*` in its YAML). */
export type AnnouncePolicyConfig = {
  readonly intervalMs: number;
  readonly emptyIntervalMs: number;
  readonly handoutSize: number;
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

/**
 * The tracker's answer to an announce already recorded in `peers`: nothing for a complete or
 * stopping peer; otherwise a random subset of `handoutSize` other agents, complete ones first,
 * then origins (while the swarm needs them), then the rest; and the interval to announce
 * again (`emptyIntervalMs` while the swarm is forming). The peer-selection rule every tracker
 * runs, and the simulator with it (`test/sim`).
 */
export const answerAnnounce = (
  peers: PeerStore,
  request: Announcement,
  config: AnnouncePolicyConfig,
): AnnounceResult => {
  if (request.stopped || request.complete) return { peers: [], intervalMs: config.intervalMs };
  const handout = peers.handout(request.infoHash, request.peerId, config.handoutSize, (n) =>
    needsOrigins(config, n),
  );
  return {
    peers: handout,
    intervalMs: handout.length === 0 ? config.emptyIntervalMs : config.intervalMs,
  };
};

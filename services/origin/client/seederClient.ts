import { createJsonClient } from '../../shared/httpClient';
import type { ClientIdentity } from '../../shared/security/clientIdentity';

/** What an origin answers when asked to seed a blob: its place in the swarm. */
export type SeederJoined = {
  /** The swarm's info hash (hex). */
  readonly infoHash: string;
  /** The origin's peer id (hex) and peer port address (`host:port`). */
  readonly peerId: string;
  readonly address: string;
};

/** The route an origin's seeder adds to its internal API. */
export const seederJoinPath = (digest: string) =>
  `/internal/p2p/swarms/${encodeURIComponent(digest)}`;

/**
 * Client of an origin's seeder (`POST /internal/p2p/swarms/:digest`): asks the origin to join
 * the swarm of a blob it holds and announce to `tracker`. `BLOB_UNKNOWN` when it does not
 * hold the blob; `SERVICE_UNAVAILABLE` when it cannot be reached or runs no seeder.
 */
export const createSeederClient = (
  originUrl: string,
  options: { timeoutMs?: number; identity?: ClientIdentity } = {},
) => {
  const call = createJsonClient(originUrl, options);
  return {
    join: async (digest: string, tracker: string): Promise<SeederJoined> =>
      (await call<SeederJoined>('POST', seederJoinPath(digest), { body: { tracker } })).body,
  };
};

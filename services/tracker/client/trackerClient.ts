import type { Digest } from '../../../domain';
import { ShoalError, isShoalError } from '../../../domain';
import { rankMembers } from '../../../domain/placement';
import type { Metainfo } from '../../../p2p/metainfo';
import { validateMetainfo } from '../../../p2p/metainfo';
import type { AnnounceAnswer, Announcement, Announcer } from '../../../p2p/swarm';
import { createJsonClient } from '../../shared/httpClient';
import type { ClientIdentity } from '../../shared/security/clientIdentity';

type AnnounceWire = {
  peers: Array<{ peerId: string; address: string; origin: boolean; complete: boolean }>;
  interval: number;
};

/**
 * Client of a set of trackers. Each digest's swarm lives on one tracker, chosen by rendezvous
 * hash of the digest over the list (every peer chooses the same one); when it cannot be
 * reached (or answers 5xx) the next in rank order is used and the failed one is skipped for
 * `downMs`, so losing a tracker moves its swarms to the next on their next announce.
 */
export const createTrackerClient = (
  urls: readonly string[],
  options: {
    timeoutMs?: number;
    downMs?: number;
    now?: () => number;
    /** Who this process is to the trackers (an announce with `origin` needs an origin). */
    identity?: ClientIdentity;
  } = {},
): Announcer & {
  metainfo(digest: Digest): Promise<Metainfo>;
  /** The trackers for a digest, best first (the first is the swarm's home). */
  rank(digest: string): string[];
} => {
  if (urls.length === 0) throw new ShoalError('CONFIG_INVALID', 'no tracker configured');
  const now = options.now ?? Date.now;
  const downMs = options.downMs ?? 5000;
  const clients = new Map(
    urls.map((url) => [
      url,
      createJsonClient(url, {
        timeoutMs: options.timeoutMs ?? 10_000,
        ...(options.identity !== undefined && { identity: options.identity }),
      }),
    ]),
  );
  const downUntil = new Map<string, number>();

  const rank = (digest: string) => rankMembers(digest, [...clients.keys()]);

  /** Calls the digest's trackers in rank order, up ones first, until one answers. */
  const call = async <T>(
    digest: string,
    fn: (client: ReturnType<typeof createJsonClient>) => Promise<T>,
  ): Promise<T> => {
    const ranked = rank(digest);
    const t = now();
    const order = [
      ...ranked.filter((u) => (downUntil.get(u) ?? 0) <= t),
      ...ranked.filter((u) => (downUntil.get(u) ?? 0) > t),
    ];
    let last: unknown;
    for (const url of order) {
      try {
        const answer = await fn(clients.get(url) as ReturnType<typeof createJsonClient>);
        downUntil.delete(url);
        return answer;
      } catch (error) {
        if (!isShoalError(error) || error.statusCode < 500) throw error;
        downUntil.set(url, now() + downMs);
        last = error;
      }
    }
    throw last ?? new ShoalError('SERVICE_UNAVAILABLE', 'no tracker answers');
  };

  return {
    rank,
    metainfo: (digest) =>
      call(digest, async (client) => {
        const { body } = await client<unknown>('GET', `/metainfo/${encodeURIComponent(digest)}`);
        const checked = validateMetainfo(body);
        if (!checked.ok) throw checked.error;
        if (checked.value.digest !== digest) {
          throw new ShoalError('INTERNAL', `tracker sent the metainfo of another blob`);
        }
        return checked.value;
      }),
    announce: (announcement: Announcement): Promise<AnnounceAnswer> =>
      call(announcement.digest, async (client) => {
        const { body } = await client<AnnounceWire>('POST', '/announce', { body: announcement });
        return { peers: body.peers, intervalMs: body.interval };
      }),
  };
};

export type TrackerClient = ReturnType<typeof createTrackerClient>;

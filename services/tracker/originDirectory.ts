import type { Digest } from '../../domain';
import { ShoalError, isShoalError } from '../../domain';
import { owners as ownersOf } from '../../domain/placement';
import type { Metainfo } from '../../p2p/metainfo';
import { infoHash as infoHashOf, validateMetainfo } from '../../p2p/metainfo';
import type { OriginClient, RingInfo } from '../origin/client/originClient';
import { createOriginClient } from '../origin/client/originClient';
import type { SeederJoined } from '../origin/client/seederClient';
import { createSeederClient } from '../origin/client/seederClient';
import type { Logger } from '../shared/logger';
import type { ClientIdentity } from '../shared/security/clientIdentity';

/**
 * The tracker's view of the origins: the ring (read from the first configured origin that
 * answers, reused for `ringTtlMs`), each digest's owners by rendezvous hashing, metainfo from
 * the owners (cached, least recently used dropped), and asking owners to join a swarm.
 */
export const createOriginDirectory = (options: {
  urls: readonly string[];
  timeoutMs: number;
  ringTtlMs: number;
  cacheEntries: number;
  logger: Logger;
  now: () => number;
  /** The tracker's identity to the origins (their internal API takes cluster identities). */
  identity?: ClientIdentity;
}) => {
  const identity = options.identity === undefined ? {} : { identity: options.identity };
  const clients = new Map<string, OriginClient>();
  const clientOf = (url: string) => {
    let client = clients.get(url);
    if (client === undefined) {
      client = createOriginClient(url, { timeoutMs: options.timeoutMs, ...identity });
      clients.set(url, client);
    }
    return client;
  };
  // One seeder client per origin (a client holds its connections).
  const seeders = new Map<string, ReturnType<typeof createSeederClient>>();
  const seederOf = (url: string) => {
    let seeder = seeders.get(url);
    if (seeder === undefined) {
      seeder = createSeederClient(url, { timeoutMs: options.timeoutMs, ...identity });
      seeders.set(url, seeder);
    }
    return seeder;
  };
  let ring: { at: number; info: RingInfo } | undefined;
  const metainfos = new Map<string, Metainfo>();
  const fetching = new Map<string, Promise<Metainfo>>();

  const readRing = async (fresh = false): Promise<RingInfo> => {
    if (!fresh && ring !== undefined && options.now() - ring.at < options.ringTtlMs) {
      return ring.info;
    }
    let last: unknown;
    for (const url of options.urls) {
      try {
        const info = await clientOf(url).ring();
        ring = { at: options.now(), info };
        return info;
      } catch (error) {
        last = error;
      }
    }
    if (ring !== undefined) return ring.info; // stale beats nothing
    throw new ShoalError('SERVICE_UNAVAILABLE', 'no origin answers', { cause: last });
  };

  /** The digest's owners (best first), as URLs. */
  const owners = async (digest: string, fresh = false): Promise<string[]> => {
    const info = await readRing(fresh);
    const address = new Map(info.members.map((m) => [m.id, m.address]));
    return ownersOf(
      digest,
      info.members.map((m) => m.id),
      info.replicas,
    ).map((id) => address.get(id) as string);
  };

  /**
   * Metainfo from the digest's owners in order. A miss everywhere is retried once on a fresh
   * ring: an origin that joined a moment ago may own (and hold) the blob.
   */
  const fetchMetainfo = async (digest: Digest, fresh = false): Promise<Metainfo> => {
    let last: unknown;
    const urls = await owners(digest, fresh);
    for (const url of urls) {
      try {
        const checked = validateMetainfo(await clientOf(url).metainfo(digest));
        if (!checked.ok || checked.value.digest !== digest) {
          throw new ShoalError('INTERNAL', `origin ${url} sent a bad metainfo for ${digest}`);
        }
        return checked.value;
      } catch (error) {
        last = error;
        if (!isShoalError(error, 'BLOB_UNKNOWN')) {
          options.logger.warn({ err: error, digest, origin: url }, 'cannot get metainfo');
        }
      }
    }
    if (!fresh) {
      const again = await owners(digest, true).catch(() => urls);
      if (again.join() !== urls.join()) return fetchMetainfo(digest, true);
    }
    if (isShoalError(last, 'BLOB_UNKNOWN')) throw last;
    throw new ShoalError('SERVICE_UNAVAILABLE', `no owner of ${digest} answers`, { cause: last });
  };

  return {
    owners,

    /** The blob's metainfo, from the cache or its owners. */
    metainfo: async (digest: Digest): Promise<{ metainfo: Metainfo; infoHash: string }> => {
      let metainfo = metainfos.get(digest);
      if (metainfo !== undefined) {
        metainfos.delete(digest); // re-insert: most recently used last
        metainfos.set(digest, metainfo);
      } else {
        let pending = fetching.get(digest);
        if (pending === undefined) {
          pending = fetchMetainfo(digest).finally(() => fetching.delete(digest));
          fetching.set(digest, pending);
        }
        metainfo = await pending;
        metainfos.set(digest, metainfo);
        while (metainfos.size > options.cacheEntries) {
          metainfos.delete(metainfos.keys().next().value as string);
        }
      }
      return { metainfo, infoHash: infoHashOf(metainfo) };
    },

    /**
     * Asks the digest's owners to join its swarm and announce to `tracker`; returns those that
     * did (an owner that lacks the blob, or runs no seeder, is skipped).
     */
    join: async (digest: string, tracker: string): Promise<SeederJoined[]> => {
      const urls = await owners(digest);
      const answers = await Promise.all(
        urls.map((url) =>
          seederOf(url)
            .join(digest, tracker)
            .catch((error: unknown) => {
              options.logger.debug({ err: error, digest, origin: url }, 'origin did not join');
              return undefined;
            }),
        ),
      );
      return answers.filter((a): a is SeederJoined => a !== undefined);
    },

    close: async () => {
      await Promise.all([...clients.values()].map((c) => c.close()));
    },
  };
};

export type OriginDirectory = ReturnType<typeof createOriginDirectory>;

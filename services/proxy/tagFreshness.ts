import type { Clock, Digest, RepoName, Tag } from '../../domain';
import { isShoalError } from '../../domain';
import type { Logger } from '../shared/logger';

/** How a recheck of a pull-through tag ended (the `result` label of its metric). */
export type RecheckResult =
  /** The upstream's tag points where Shoal's does. */
  | 'unchanged'
  /** It moved upstream: the new manifest was pulled through and Shoal's tag moved. */
  | 'moved'
  /** The upstream has no such tag (any more): Shoal's tag stands. */
  | 'gone'
  /** The upstream could not be asked (down, refusing, 5xx): Shoal's tag is served. */
  | 'failed'
  /** The pull stopped waiting for the check and was answered Shoal's tag (it goes on). */
  | 'timeout'
  /** The repository is no pull-through namespace (remembered a while). */
  | 'local';

export type TagFreshnessDeps = {
  readonly clock: Clock;
  /** A tag is asked of the upstream again once this long has passed since its last check. */
  readonly recheckMs: number;
  /** A pull waits this long for a check, then is answered Shoal's digest (0: no limit). */
  readonly waitMs: number;
  /** The tag's digest upstream (BlobAccess.upstreamDigest); undefined: not pulled through. */
  readonly upstreamDigest: (repo: RepoName, tag: Tag) => Promise<Digest | undefined>;
  /** Pulls the tag through as a first pull does, moving Shoal's tag; resolves its digest. */
  readonly pull: (repo: RepoName, tag: Tag) => Promise<Digest>;
  readonly logger?: Logger;
  readonly count?: (result: RecheckResult) => void;
  /** Tags (and repositories) whose last check is remembered; the oldest are forgotten. */
  readonly maxEntries?: number;
};

/**
 * Freshness of tags pulled through from an upstream registry. Shoal serves its own tag; once
 * `recheckMs` has passed since the tag was last checked (0: on every pull), a pull asks the
 * upstream where the tag points (a `HEAD`, through an origin) and, when it moved, pulls the
 * new manifest through the way a first pull does (events with the `pull-through` actor, the
 * tag moved through the TagApi, so it has history). Concurrent pulls of one tag share one
 * check. An upstream that cannot be asked, or a check that outlasts `waitMs`, is logged and
 * counted, and the pull is answered the digest Shoal has: never an error.
 *
 * The times of last checks are this proxy's, in memory: a fresh proxy checks each tag on its
 * first pull. Repositories that are no pull-through namespace are remembered as such for
 * `max(recheckMs, 60 s)`, so their pulls cost no origin request.
 */
export const createTagFreshness = (deps: TagFreshnessDeps) => {
  const { clock, recheckMs, waitMs, logger } = deps;
  const count = deps.count ?? (() => undefined);
  const maxEntries = deps.maxEntries ?? 100_000;
  const localMs = Math.max(recheckMs, 60_000);
  /** Last check of each tag, oldest first (re-inserted on every check). */
  const checkedAt = new Map<string, number>();
  /** Repositories no upstream serves, until when that is believed. */
  const localUntil = new Map<RepoName, number>();
  const running = new Map<string, Promise<Digest>>();

  const remember = <K>(map: Map<K, number>, key: K, value: number) => {
    map.delete(key);
    map.set(key, value);
    if (map.size > maxEntries) map.delete(map.keys().next().value as K);
  };
  const keyOf = (repo: RepoName, tag: Tag) => `${repo}:${tag}`;

  const recheck = async (repo: RepoName, tag: Tag, known: Digest): Promise<Digest> => {
    const key = keyOf(repo, tag);
    try {
      const upstream = await deps.upstreamDigest(repo, tag);
      if (upstream === undefined) {
        remember(localUntil, repo, clock.now() + localMs);
        count('local');
        return known;
      }
      if (upstream === known) {
        remember(checkedAt, key, clock.now());
        count('unchanged');
        return known;
      }
      const moved = await deps.pull(repo, tag);
      remember(checkedAt, key, clock.now());
      count('moved');
      logger?.info({ repo, tag, from: known, to: moved }, 'a pull-through tag moved upstream');
      return moved;
    } catch (error) {
      // Asked again after recheckMs, not on every pull while the upstream is away.
      remember(checkedAt, key, clock.now());
      if (isShoalError(error, 'MANIFEST_UNKNOWN')) {
        count('gone');
        logger?.info({ repo, tag, digest: known }, 'a pull-through tag is gone upstream; kept');
        return known;
      }
      count('failed');
      logger?.warn(
        { err: error, repo, tag, digest: known },
        'cannot recheck a pull-through tag upstream; serving the last known digest',
      );
      return known;
    }
  };

  const waitAtMost = (check: Promise<Digest>, repo: RepoName, tag: Tag, known: Digest) => {
    if (waitMs <= 0) return check;
    let timer: NodeJS.Timeout | undefined;
    const late = new Promise<Digest>((resolve) => {
      timer = setTimeout(() => {
        count('timeout');
        logger?.warn(
          { repo, tag, digest: known, waitMs },
          'a pull-through tag recheck is slow; serving the last known digest',
        );
        resolve(known);
      }, waitMs);
      timer.unref();
    });
    return Promise.race([check, late]).finally(() => clearTimeout(timer));
  };

  return {
    /** Records that `tag` was just resolved through the upstream (a first pull-through). */
    pulled: (repo: RepoName, tag: Tag): void => remember(checkedAt, keyOf(repo, tag), clock.now()),

    /**
     * The digest to serve for a tag Shoal resolves to `known`: `known` while the tag was
     * checked within `recheckMs` (or its repository is no pull-through namespace), else what
     * a recheck finds. Never rejects.
     */
    current: (repo: RepoName, tag: Tag, known: Digest): Promise<Digest> => {
      const now = clock.now();
      if ((localUntil.get(repo) ?? -Infinity) > now) return Promise.resolve(known);
      const key = keyOf(repo, tag);
      const last = checkedAt.get(key);
      if (last !== undefined && now - last < recheckMs) return Promise.resolve(known);
      let check = running.get(key);
      if (check === undefined) {
        check = recheck(repo, tag, known).finally(() => running.delete(key));
        running.set(key, check);
      }
      return waitAtMost(check, repo, tag, known);
    },
  };
};

export type TagFreshness = ReturnType<typeof createTagFreshness>;

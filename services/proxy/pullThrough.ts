import type { Digest, Manifest, Position, RepoName, ShoalEvent, Tag } from '../../domain';
import {
  ShoalError,
  checkManifestSize,
  isShoalError,
  manifestReferences,
  orThrow,
  parseManifest,
  parseTag,
  truncate,
} from '../../domain';
import type { TagApi } from '../build-index/client/tagApi';
import type { BlobAccess } from '../origin/client/blobAccess';
import type { WriterContext } from '../shared/events';
import { newEvent } from '../shared/events';
import { isDigestReference } from '../shared/oci/parseV2Path';
import type { ManifestIndexReader } from './manifestIndexReader';
import type { TagFreshnessDeps } from './tagFreshness';
import { createTagFreshness } from './tagFreshness';

/** How tags pulled through are kept fresh (see createTagFreshness); the rest is wired here. */
export type PullThroughFreshness = Pick<TagFreshnessDeps, 'recheckMs' | 'waitMs'> &
  Partial<Pick<TagFreshnessDeps, 'logger' | 'count'>>;

/** The defaults of the proxy's `pullThrough` configuration. */
export const defaultFreshness: PullThroughFreshness = { recheckMs: 300_000, waitMs: 5_000 };

/**
 * Appends what records a manifest in a repository — `links` first, then `ManifestPushed` in
 * the same batch — and waits until the proxy's projections have it (the distribution's).
 */
export type RecordManifest = (
  repo: RepoName,
  digest: Digest,
  bytes: Buffer,
  manifest: Manifest,
  references: readonly Digest[],
  options?: {
    links?: readonly ShoalEvent[];
    writer?: WriterContext;
    /** When the children were referenced on their streams (a push: see ReferenceGuard). */
    referencedAt?: number;
  },
) => Promise<Position>;

export type PullThroughDeps = {
  readonly blobs: BlobAccess;
  readonly tags: TagApi;
  readonly writer: WriterContext;
  readonly manifestMaxBytes: number;
  readonly index: Pick<ManifestIndexReader, 'linkOf' | 'manifestDoc'>;
  readonly recordManifest: RecordManifest;
  /** Keeps the bytes of a manifest the repository had already (the manifest cache). */
  readonly remember: (digest: Digest, bytes: Buffer) => void;
  readonly freshness?: PullThroughFreshness;
};

/**
 * Pull-through of a manifest a repository lacks: an origin fetches it from the upstream
 * registry the repository's namespace routes to (`BlobAccess.pullManifest`: verified, and
 * stored as a blob of the repository). The proxy then records it as a push would leave it:
 * the children of an index are pulled the same way (by digest), config and layers are
 * linked to the repository (`BlobUploaded`, their bytes stay upstream until a read fills an
 * origin from the `registry` backend), then `ManifestPushed`, and a tag is set through the
 * TagApi (so it has a history).
 *
 * Returns `pull(repo, reference)`, which resolves with the manifest's digest;
 * `MANIFEST_UNKNOWN` when the repository is no pull-through namespace or the upstream lacks
 * the manifest. Concurrent pulls of one reference through this proxy share one pull.
 * And `current(repo, tag, known)`: the digest to serve for a tag Shoal has, rechecked
 * upstream once `freshness.recheckMs` has passed (see createTagFreshness); digests are
 * immutable and never rechecked.
 */
export const createPullThrough = (deps: PullThroughDeps) => {
  const { blobs, tags, writer, manifestMaxBytes, recordManifest, remember } = deps;
  const { linkOf, manifestDoc } = deps.index;
  /** Who pull-through writes as, in the events the proxy appends for it. */
  const pullWriter: WriterContext = { ...writer, actor: 'pull-through' };
  /** Pulls running, by repository and reference: concurrent misses share one. */
  const pulls = new Map<string, Promise<Digest>>();
  /** An index of indexes of … is followed this deep at most. */
  const maxPullDepth = 4;
  /** Child manifests of an index pulled at once. */
  const pullConcurrency = 4;

  const pullThrough = (repo: RepoName, reference: string, depth = 0): Promise<Digest> => {
    const key = `${repo}@${reference}`;
    let running = pulls.get(key);
    if (running === undefined) {
      running = pullOnce(repo, reference, depth).finally(() => pulls.delete(key));
      pulls.set(key, running);
    }
    return running;
  };

  const pullOnce = async (repo: RepoName, reference: string, depth: number): Promise<Digest> => {
    const tag = isDigestReference(reference) ? undefined : orThrow(parseTag(reference));
    const pulled = await blobs.pullManifest(repo, reference);
    const { digest, bytes } = pulled;
    if (tag === undefined && digest !== reference) {
      throw new ShoalError(
        'DIGEST_INVALID',
        `the upstream answered ${truncate(reference)} with manifest ${digest}`,
        { detail: { digest: truncate(reference) } },
      );
    }
    orThrow(checkManifestSize(bytes.length, manifestMaxBytes));
    if ((await manifestDoc(repo, digest)) === undefined) {
      const manifest = orThrow(
        parseManifest(bytes.toString('utf8'), pulled.mediaType || undefined),
      );
      const refs = manifestReferences(manifest);
      if (refs.manifests.length > 0 && depth >= maxPullDepth) {
        throw new ShoalError(
          'MANIFEST_INVALID',
          `upstream manifest ${digest} of ${repo} nests indexes more than ${maxPullDepth} deep`,
        );
      }
      for (let i = 0; i < refs.manifests.length; i += pullConcurrency) {
        await Promise.all(
          refs.manifests.slice(i, i + pullConcurrency).map(async (child) => {
            if ((await manifestDoc(repo, child)) !== undefined) return;
            try {
              await pullThrough(repo, child, depth + 1);
            } catch (error) {
              if (!isShoalError(error, 'MANIFEST_UNKNOWN')) throw error;
              // Not "no such manifest": the one asked for exists, the upstream lacks a child.
              throw new ShoalError(
                'STORAGE_UNAVAILABLE',
                `upstream index ${digest} of ${repo} references manifest ${child}, which the ` +
                  'upstream does not have',
                { retriable: false, detail: { name: repo, digest: child } },
              );
            }
          }),
        );
      }
      const descriptors = new Map(
        [...(manifest.config ? [manifest.config] : []), ...manifest.layers].map((d) => [
          d.digest,
          d,
        ]),
      );
      const links: ShoalEvent[] = [];
      for (const blob of refs.blobs) {
        const descriptor = descriptors.get(blob);
        if (descriptor === undefined || (await linkOf(repo, blob, false)) !== undefined) continue;
        links.push(
          newEvent(pullWriter, 'BlobUploaded', {
            digest: blob,
            size: descriptor.size,
            repo,
            mediaType: descriptor.mediaType,
          }),
        );
      }
      await recordManifest(repo, digest, bytes, manifest, [...refs.blobs, ...refs.manifests], {
        links,
        writer: pullWriter,
      });
    } else {
      remember(digest, bytes);
    }
    if (tag !== undefined) {
      await tags.put({ repo, tag }, digest);
      freshness.pulled(repo, tag);
    }
    return digest;
  };

  const freshness = createTagFreshness({
    ...(deps.freshness ?? defaultFreshness),
    clock: writer.clock,
    upstreamDigest: (repo: RepoName, tag: Tag) => blobs.upstreamDigest(repo, tag),
    pull: (repo: RepoName, tag: Tag) => pullThrough(repo, tag),
  });

  return {
    pull: (repo: RepoName, reference: string) => pullThrough(repo, reference),
    current: freshness.current,
  };
};

export type PullThrough = ReturnType<typeof createPullThrough>;

import type { Descriptor, Digest } from '../../domain';
import {
  digestAlgorithm,
  effectiveArtifactType,
  manifestKinds,
  mediaTypes,
  orThrow,
  parseManifest,
} from '../../domain';
import type { CopyContext } from './copier';
import { copyManifestTree } from './copier';

/** A manifest that refers to a subject, as the source knows it. */
export type SourceReferrer = { readonly digest: Digest };

/**
 * The referrers of `subject` in `repo` at the source (manifests whose `subject` is it), as of
 * a position at least as new as the change being replicated.
 */
export type SourceReferrers = (repo: string, subject: Digest) => Promise<readonly SourceReferrer[]>;

/** Referrers of referrers (a signature on an SBOM) are followed this deep. */
const maxDepth = 4;

/**
 * The manifests of a tree whose referrers travel with it: the manifest itself and, for an
 * index, its children (and theirs). Only indexes are read: a child's kind is on its descriptor.
 */
export const manifestsOfTree = async (
  ctx: Pick<CopyContext, 'source' | 'signal'>,
  digest: Digest,
  mediaType?: string,
  depth = 0,
): Promise<Digest[]> => {
  const out: Digest[] = [digest];
  if (depth > 8) return out;
  if (mediaType !== undefined && manifestKinds[mediaType] !== 'index') return out;
  ctx.signal?.throwIfAborted();
  const manifest = orThrow(parseManifest((await ctx.source.manifest(digest)).toString('utf8')));
  for (const child of manifest.manifests) {
    out.push(...(await manifestsOfTree(ctx, child.digest, child.mediaType, depth + 1)));
  }
  return out;
};

/** The referrers tag of the OCI distribution spec's fallback: `<alg>-<hex>` of the subject. */
export const referrersTag = (subject: Digest): string =>
  `${digestAlgorithm(subject)}-${subject.slice(digestAlgorithm(subject).length + 1)}`.slice(0, 128);

/** The descriptor a referrers index lists for a manifest (OCI distribution-spec 1.1). */
const referrerDescriptor = (digest: Digest, bytes: Buffer): Descriptor => {
  const manifest = orThrow(parseManifest(bytes.toString('utf8')));
  const artifactType = effectiveArtifactType(manifest);
  return {
    mediaType: manifest.mediaType,
    digest,
    size: bytes.length,
    ...(artifactType !== undefined && { artifactType }),
    ...(manifest.annotations !== undefined && { annotations: manifest.annotations }),
  };
};

/**
 * Adds a referrer to its subject's referrers tag at a destination without the referrers API
 * (the spec's fallback for registries that do not answer `OCI-Subject`): read the index the
 * tag names, add the descriptor unless it is there, push it back under the tag.
 */
const addToReferrersTag = async (
  ctx: CopyContext,
  repo: string,
  subject: Digest,
  descriptor: Descriptor,
): Promise<void> => {
  const tag = referrersTag(subject);
  const current = await ctx.destination.getManifest(repo, tag);
  const manifests: Descriptor[] =
    current === undefined
      ? []
      : [...orThrow(parseManifest(current.bytes.toString('utf8'))).manifests];
  if (manifests.some((m) => m.digest === descriptor.digest)) return;
  manifests.push(descriptor);
  const index = { schemaVersion: 2, mediaType: mediaTypes.ociIndex, manifests };
  await ctx.destination.putManifest(
    repo,
    tag,
    Buffer.from(JSON.stringify(index)),
    mediaTypes.ociIndex,
  );
};

/**
 * Copies one referrer to the destination if it lacks it: its own blobs (or children) first,
 * then the manifest by digest, with the subject relation kept — by the destination's referrers
 * API, else by the referrers tag. Then the referrer's own referrers.
 */
const copyReferrer = async (
  ctx: CopyContext,
  referrers: SourceReferrers,
  repo: string,
  subject: Digest,
  digest: Digest,
  depth: number,
): Promise<number> => {
  ctx.signal?.throwIfAborted();
  let copied = 0;
  if ((await ctx.destination.manifestInfo(repo, digest)) === undefined) {
    const manifest = await copyManifestTree(ctx, repo, digest);
    const { indexed } = await ctx.destination.putReferrer(
      repo,
      digest,
      manifest.bytes,
      manifest.mediaType,
    );
    if (!indexed) {
      await addToReferrersTag(ctx, repo, subject, referrerDescriptor(digest, manifest.bytes));
    }
    copied += 1;
  } else if (!(await ctx.destination.hasReferrersApi(repo, subject))) {
    // There already, perhaps from an attempt that failed before the referrers tag was
    // written: make sure the tag lists it (nothing is written when it does).
    const bytes = await ctx.source.manifest(digest);
    await addToReferrersTag(ctx, repo, subject, referrerDescriptor(digest, bytes));
  }
  return copied + (await copyReferrersOf(ctx, referrers, repo, [digest], depth + 1));
};

/**
 * Makes the destination hold every referrer the source has for each of `subjects` (and their
 * referrers in turn), each checked with a `HEAD` first so a repeat copies nothing. Resolves
 * with how many manifests were written.
 */
export const copyReferrersOf = async (
  ctx: CopyContext,
  referrers: SourceReferrers,
  repo: string,
  subjects: readonly Digest[],
  depth = 0,
): Promise<number> => {
  if (depth > maxDepth) return 0;
  let copied = 0;
  for (const subject of subjects) {
    for (const referrer of await referrers(repo, subject)) {
      copied += await copyReferrer(ctx, referrers, repo, subject, referrer.digest, depth);
    }
  }
  return copied;
};

/**
 * A referrer pushed at the source after its subject was replicated: copied when the
 * destination has the subject (a referrer follows its subject; one whose subject is not
 * there yet goes with the subject's tag). `'absent'`: the subject is not at the destination.
 */
export const replicateReferrer = async (
  ctx: CopyContext,
  referrers: SourceReferrers,
  repo: string,
  subject: Digest,
  digest: Digest,
): Promise<'absent' | 'unchanged' | 'written'> => {
  if ((await ctx.destination.manifestInfo(repo, subject)) === undefined) return 'absent';
  const copied = await copyReferrer(ctx, referrers, repo, subject, digest, 0);
  return copied > 0 ? 'written' : 'unchanged';
};

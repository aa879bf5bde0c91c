import { createHash } from 'node:crypto';
import type { Readable } from 'node:stream';
import type { Descriptor, Digest } from '../../domain';
import {
  ShoalError,
  digestAlgorithm,
  manifestMaxBytes,
  manifestReferences,
  orThrow,
  parseManifest,
} from '../../domain';
import type { BlobAccess } from '../origin/client/blobAccess';
import type { RegistryClient } from '../../adapters/registry/registryClient';
import type { CopyProgress } from './client/replicationApi';

/** Where the replicator reads what it copies: this cluster's blobs, manifests included. */
export type SourceBlobs = {
  /** A manifest's bytes, checked against its digest. */
  manifest(digest: Digest): Promise<Buffer>;
  /** Bytes `start..end` (inclusive) of a blob. */
  blob(digest: Digest, start: number, end: number): Promise<Readable>;
};

const readAll = async (stream: Readable, limit: number): Promise<Buffer> => {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of stream) {
    size += (chunk as Buffer).length;
    if (size > limit) {
      stream.destroy();
      throw new ShoalError('SIZE_INVALID', `manifest is larger than ${limit} bytes`);
    }
    chunks.push(chunk as Buffer);
  }
  return Buffer.concat(chunks);
};

const hashOf = (digest: Digest, bytes: Buffer) =>
  `${digestAlgorithm(digest)}:${createHash(digestAlgorithm(digest)).update(bytes).digest('hex')}`;

/** The source over the cluster's origins (`BlobAccess`): manifests are stored as blobs. */
export const sourceFromBlobAccess = (blobs: BlobAccess): SourceBlobs => ({
  async manifest(digest) {
    const bytes = await readAll((await blobs.get(digest)).stream, manifestMaxBytes);
    if (hashOf(digest, bytes) !== digest) {
      throw new ShoalError(
        'DIGEST_INVALID',
        `source manifest ${digest} does not match its digest`,
        {
          retriable: true,
        },
      );
    }
    return bytes;
  },
  async blob(digest, start, end) {
    return (await blobs.get(digest, { start, end })).stream;
  },
});

/**
 * Repositories of a destination that hold a blob, as far as this replicator knows: where a
 * cross-repository mount can take it from. A bounded map, newest kept.
 */
export type MountHints = {
  get(digest: string): string | undefined;
  set(digest: string, repo: string): void;
};

export const createMountHints = (max = 50_000): MountHints => {
  const map = new Map<string, string>();
  return {
    get: (digest) => map.get(digest),
    set: (digest, repo) => {
      map.delete(digest);
      map.set(digest, repo);
      if (map.size > max) map.delete(map.keys().next().value as string);
    },
  };
};

export type CopyContext = {
  readonly source: SourceBlobs;
  readonly destination: RegistryClient;
  readonly chunkSize: number;
  readonly blobConcurrency: number;
  readonly mountHints: MountHints;
  readonly onProgress?: (progress: CopyProgress) => void;
  readonly signal?: AbortSignal;
};

/** Runs `fn` over `items`, at most `limit` at once; the first failure fails the whole. */
const eachLimited = async <T>(
  items: readonly T[],
  limit: number,
  fn: (item: T) => Promise<void>,
): Promise<void> => {
  let next = 0;
  let failed: unknown;
  const worker = async () => {
    while (next < items.length && failed === undefined) {
      const item = items[next++] as T;
      try {
        await fn(item);
      } catch (error) {
        failed ??= error;
      }
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
  if (failed !== undefined) throw failed;
};

/** Nested indexes deeper than this are refused (a manifest cycle cannot exist, but a bug can). */
const maxDepth = 8;

/**
 * Makes sure the destination repository has one blob: present already (HEAD), mounted from a
 * repository known to hold it, or uploaded from the source.
 */
const copyBlob = async (ctx: CopyContext, repo: string, blob: Descriptor): Promise<void> => {
  const { destination, mountHints } = ctx;
  ctx.signal?.throwIfAborted();
  if ((await destination.blobSize(repo, blob.digest)) !== undefined) {
    mountHints.set(blob.digest, repo);
    return;
  }
  const from = mountHints.get(blob.digest);
  if (from !== undefined && from !== repo) {
    if (await destination.mountBlob(repo, blob.digest, from)) {
      mountHints.set(blob.digest, repo);
      return;
    }
  }
  await destination.uploadBlob(
    repo,
    { digest: blob.digest, size: blob.size },
    (start, end) => ctx.source.blob(blob.digest, start, end),
    {
      chunkSize: ctx.chunkSize,
      ...(ctx.onProgress && {
        onProgress: (sent: number) =>
          ctx.onProgress?.({ digest: blob.digest, sent, size: blob.size }),
      }),
      ...(ctx.signal && { signal: ctx.signal }),
    },
  );
  mountHints.set(blob.digest, repo);
};

export type CopiedManifest = { readonly bytes: Buffer; readonly mediaType: string };

/**
 * Copies everything a manifest needs into the destination repository, children first: an
 * image's config and layers; an index's child manifests (each with its blobs, then pushed
 * by digest). The manifest itself is returned, not pushed: the caller pushes it by tag.
 * Foreign layers (with `urls`) are not copied, as registries do not hold them.
 */
export const copyManifestTree = async (
  ctx: CopyContext,
  repo: string,
  digest: Digest,
  depth = 0,
): Promise<CopiedManifest> => {
  if (depth > maxDepth) {
    throw new ShoalError('MANIFEST_INVALID', `manifest ${digest}: indexes nested too deep`);
  }
  const bytes = await ctx.source.manifest(digest);
  const manifest = orThrow(parseManifest(bytes.toString('utf8')));
  if (manifest.kind === 'index') {
    for (const child of manifest.manifests) {
      ctx.signal?.throwIfAborted();
      if ((await ctx.destination.manifestInfo(repo, child.digest)) !== undefined) continue;
      const copied = await copyManifestTree(ctx, repo, child.digest, depth + 1);
      await ctx.destination.putManifest(repo, child.digest, copied.bytes, copied.mediaType);
    }
  } else {
    const wanted = new Set(manifestReferences(manifest).blobs);
    const blobs = [...(manifest.config ? [manifest.config] : []), ...manifest.layers].filter((d) =>
      wanted.delete(d.digest),
    );
    await eachLimited(blobs, ctx.blobConcurrency, (blob) => copyBlob(ctx, repo, blob));
  }
  return { bytes, mediaType: manifest.mediaType };
};

/**
 * Makes `repo:tag` at the destination point at `digest`, with everything it needs. Does
 * nothing when it already does; skips the copy when the destination has the manifest (it
 * has its references then: registries refuse a manifest whose blobs they lack).
 */
export const replicateTag = async (
  ctx: CopyContext,
  repo: string,
  tag: string,
  digest: Digest,
): Promise<'unchanged' | 'written'> => {
  const current = await ctx.destination.manifestInfo(repo, tag);
  if (current?.digest === digest) return 'unchanged';
  let manifest: CopiedManifest;
  if ((await ctx.destination.manifestInfo(repo, digest)) !== undefined) {
    const bytes = await ctx.source.manifest(digest);
    manifest = { bytes, mediaType: orThrow(parseManifest(bytes.toString('utf8'))).mediaType };
  } else {
    manifest = await copyManifestTree(ctx, repo, digest);
  }
  const written = await ctx.destination.putManifest(repo, tag, manifest.bytes, manifest.mediaType);
  if (written !== undefined && written !== digest) {
    throw new ShoalError(
      'DIGEST_INVALID',
      `${ctx.destination.baseUrl} stored ${repo}:${tag} as ${written}, not ${digest}`,
      { retriable: true },
    );
  }
  return 'written';
};

/** What deleting a tag at the destination came to. */
export type DeleteOutcome =
  | { readonly kind: 'deleted' | 'absent' }
  /** The registry cannot delete a tag; the manifest was deleted by digest instead (safe). */
  | { readonly kind: 'deleted-manifest'; readonly digest: string }
  /** Neither was possible: the tag stays at the destination. */
  | { readonly kind: 'unsupported'; readonly reason: string };

/** Tags looked at before deleting a manifest by digest; more and the delete is not risked. */
const maxTagsChecked = 1000;

/**
 * Deletes `repo:tag` at the destination. Registries that cannot delete a tag (the CNCF
 * registry answers 400 to `DELETE …/manifests/<tag>`) delete a manifest by digest, which
 * removes every tag pointing at it; that is done only when no other tag of the repository
 * points at the manifest or at an index containing it — never taking away what another tag
 * still names.
 */
export const deleteTag = async (
  ctx: Pick<CopyContext, 'destination' | 'signal'>,
  repo: string,
  tag: string,
): Promise<DeleteOutcome> => {
  const { destination } = ctx;
  const info = await destination.manifestInfo(repo, tag);
  if (info === undefined) return { kind: 'absent' };
  const byTag = await destination.deleteManifest(repo, tag);
  if (byTag !== 'unsupported') return { kind: byTag };
  const digest = info.digest;
  if (digest === undefined) {
    return { kind: 'unsupported', reason: 'the destination cannot delete tags' };
  }
  const tags = await destination.listTags(repo, { max: maxTagsChecked + 1 });
  if (tags.length > maxTagsChecked) {
    return {
      kind: 'unsupported',
      reason: `the destination cannot delete tags, and ${repo} has too many tags to check`,
    };
  }
  for (const other of tags) {
    if (other === tag) continue;
    ctx.signal?.throwIfAborted();
    const found = await destination.getManifest(repo, other);
    if (found === undefined) continue;
    const text = found.bytes.toString('utf8');
    if (found.digest === digest || text.includes(digest)) {
      return {
        kind: 'unsupported',
        reason:
          `the destination cannot delete tags, and ${repo}:${other} still uses ${digest}: ` +
          'the tag is kept',
      };
    }
  }
  const byDigest = await destination.deleteManifest(repo, digest);
  if (byDigest === 'unsupported') {
    return { kind: 'unsupported', reason: 'the destination deletes neither tags nor manifests' };
  }
  return { kind: 'deleted-manifest', digest };
};

import { createHash } from 'node:crypto';
import type { Readable } from 'node:stream';
import type {
  Digest,
  EventLog,
  Manifest,
  Position,
  ProjectionStore,
  RepoName,
  Tag,
} from '../../domain';
import {
  ShoalError,
  checkManifestSize,
  digestAlgorithm,
  effectiveArtifactType,
  isShoalError,
  manifestReferences,
  orThrow,
  parseManifest,
  parseTag,
  quotaExceeded,
  truncate,
} from '../../domain';
import type { BlobLinkDoc, DeletedDoc, PositionDoc, ReferrerDoc } from '../../projections';
import {
  internalPartitionPrefix,
  isLinked,
  manifestIndexKeys as keys,
  manifestIndexProjection,
} from '../../projections';
import type { TagApi } from '../build-index/client/tagApi';
import type { BlobAccess, UploadBinding } from '../origin/client/blobAccess';
import type { Attribution, WriterContext } from '../shared/events';
import { attributedWriter, newEvent } from '../shared/events';
import { readBody } from '../../kit/http/transport';
import { quotaApplies, quotaExceededBy } from '../shared/quotas';
import { createManifestCache } from '../shared/oci/manifestCache';
import { digestParam, isDigestReference } from '../shared/oci/parseV2Path';
import { createManifestIndexReader } from './manifestIndexReader';
import type { PullThroughFreshness, RecordManifest } from './pullThrough';
import { createPullThrough } from './pullThrough';
import { createReferenceGuard } from './referenceGuard';

const projection = manifestIndexProjection.name;
/** The largest manifest any proxy configuration accepts (limits.manifestMaxBytes' maximum). */
const maxStoredManifestBytes = 64 * 1024 * 1024;

/** A manifest as served: its bytes and what the headers say about them. */
export type StoredManifest = {
  readonly digest: Digest;
  readonly mediaType: string;
  readonly bytes: Buffer;
};

export type ManifestPutResult = {
  readonly digest: Digest;
  readonly position: Position;
  readonly subject?: Digest;
};

/** A page of names and whether more follow (for `Link: <…>; rel="next"`). */
export type NamePage = { readonly items: string[]; readonly more: boolean };

export type DistributionDeps = {
  readonly log: EventLog;
  readonly store: ProjectionStore;
  readonly blobs: BlobAccess;
  readonly tags: TagApi;
  readonly writer: WriterContext;
  /** Resolves once the proxy's projections have applied `position` (bounded wait). */
  readonly waitFor: (position: Position) => Promise<void>;
  readonly limits: { readonly manifestMaxBytes: number; readonly manifestCacheBytes: number };
  /**
   * A manifest push must record its manifest within this long of referencing its children
   * (default 60 s); GC's grace window must be at least 4 × this (see ReferenceGuard).
   */
  readonly referenceWindowMs?: number;
  /** Rechecks of tags pulled through (default: every 300 s, a pull waits 5 s at most). */
  readonly freshness?: PullThroughFreshness;
};

export type Distribution = ReturnType<typeof createDistribution>;

const manifestUnknown = (repo: string, reference: string) =>
  new ShoalError('MANIFEST_UNKNOWN', `manifest ${truncate(reference)} is not in ${repo}`, {
    detail: { name: repo, reference: truncate(reference) },
  });

const blobUnknown = (repo: string, digest: string) =>
  new ShoalError('BLOB_UNKNOWN', `blob ${truncate(digest)} is not in ${repo}`, {
    detail: { name: repo, digest: truncate(digest) },
  });

const hashOf = (digest: Digest, bytes: Buffer): Digest =>
  `${digestAlgorithm(digest)}:${createHash(digestAlgorithm(digest)).update(bytes).digest('hex')}` as Digest;

/**
 * The proxy's OCI Distribution API, free of HTTP: what exists in a
 * repository (the manifest-index projection), blob bytes (BlobAccess, i.e. the origins), tags
 * (build-index's TagApi) and the events the proxy writes (ManifestPushed/Deleted, BlobUploaded
 * for mounts, BlobDeleted).
 *
 * Read-your-writes: every write waits for the proxy's projections to apply its position
 * before it returns; a read that misses catches up with the log's head once and looks again,
 * so a write made through another proxy or process is seen as soon as it is on the log.
 */
export const createDistribution = (deps: DistributionDeps) => {
  const { log, store, blobs, tags, writer, waitFor, limits } = deps;
  const guard = createReferenceGuard({
    log,
    writer,
    clock: writer.clock,
    windowMs: deps.referenceWindowMs ?? 60_000,
  });
  /** Quotas of the repository's namespaces (the policies and references projections). */
  const quota = {
    applies: (repo: RepoName) => quotaApplies(store, repo),
    check: async (repo: RepoName, added: ReadonlyArray<{ digest: string; size: number }>) => {
      const over = await quotaExceededBy(store, repo, added);
      if (over !== undefined) throw quotaExceeded(over.namespace, over);
    },
  };
  const cache = createManifestCache(limits.manifestCacheBytes);

  const { syncToHead, linkOf, manifestDoc, listAll } = createManifestIndexReader({
    log,
    store,
    waitFor,
  });

  /** Resolves a reference to a digest; tags through build-index. */
  const resolve = async (repo: RepoName, reference: string): Promise<Digest> => {
    if (isDigestReference(reference)) return digestParam(reference);
    const tag = parseTag(reference);
    if (!tag.ok) throw manifestUnknown(repo, reference);
    try {
      return (await tags.get({ repo, tag: tag.value })).digest;
    } catch (error) {
      if (!isShoalError(error, 'TAG_UNKNOWN')) throw error;
    }
    try {
      const head = await log.head();
      return (await tags.get({ repo, tag: tag.value }, { minPosition: head })).digest;
    } catch (error) {
      if (isShoalError(error, 'TAG_UNKNOWN')) throw manifestUnknown(repo, reference);
      throw error;
    }
  };

  /** A stored manifest's bytes; bounded by the largest cap a proxy may be configured with. */
  const readAll = async (stream: Readable): Promise<Buffer> => {
    const { bytes, truncated } = await readBody(stream, maxStoredManifestBytes);
    if (truncated) {
      throw new ShoalError('INTERNAL', `a stored manifest is over ${maxStoredManifestBytes} bytes`);
    }
    return bytes;
  };

  const checkReferences = async (repo: RepoName, manifest: Manifest) => {
    const refs = manifestReferences(manifest);
    const missing: string[] = [];
    await Promise.all([
      ...refs.blobs.map(async (digest) => {
        if ((await linkOf(repo, digest, true)) === undefined) missing.push(digest);
      }),
      ...refs.manifests.map(async (digest) => {
        if ((await manifestDoc(repo, digest)) === undefined) missing.push(digest);
      }),
    ]);
    if (missing.length > 0) {
      throw new ShoalError(
        'MANIFEST_BLOB_UNKNOWN',
        `manifest references ${missing.length} blob(s) or manifest(s) not in ${repo}: ` +
          `${missing.slice(0, 3).join(', ')}`,
        { detail: { name: repo, digests: missing.slice(0, 20) } },
      );
    }
    return [...refs.blobs, ...refs.manifests];
  };

  /**
   * Appends what records a manifest in a repository — `links` first (pull-through), then
   * `ManifestPushed` in the same batch — and waits until the proxy's projections have it.
   * The manifest's bytes are stored on the origins already.
   */
  const recordManifest: RecordManifest = async (
    repo,
    digest,
    bytes,
    manifest,
    references,
    options = {},
  ) => {
    if (options.referencedAt !== undefined) guard.fresh(options.referencedAt);
    cache.set(digest, bytes);
    const subject = manifest.subject?.digest;
    const artifactType =
      subject !== undefined || manifest.artifactType !== undefined
        ? effectiveArtifactType(manifest)
        : undefined;
    const position = await log.append([
      ...(options.links ?? []),
      newEvent(options.writer ?? writer, 'ManifestPushed', {
        repo,
        digest,
        mediaType: manifest.mediaType,
        size: bytes.length,
        references: [...references],
        ...(subject !== undefined && { subject }),
        ...(artifactType !== undefined && { artifactType }),
        ...(subject !== undefined &&
          manifest.annotations !== undefined && { annotations: { ...manifest.annotations } }),
      }),
    ]);
    await waitFor(position);
    return position;
  };

  const pullThrough = createPullThrough({
    blobs,
    tags,
    writer,
    manifestMaxBytes: limits.manifestMaxBytes,
    index: { linkOf, manifestDoc },
    recordManifest,
    remember: cache.set,
    ...(deps.freshness !== undefined && { freshness: deps.freshness }),
  });

  const pageOf = (names: string[], n: number | undefined): NamePage =>
    n !== undefined && names.length > n
      ? { items: names.slice(0, n), more: true }
      : { items: names, more: false };

  return {
    syncToHead,

    /** Size of a blob linked to the repository; `BLOB_UNKNOWN` otherwise. */
    statBlob: async (repo: RepoName, digest: Digest): Promise<{ size: number }> => {
      const link = await linkOf(repo, digest, true);
      if (link === undefined) throw blobUnknown(repo, digest);
      return { size: link.size };
    },

    getBlob: async (repo: RepoName, digest: Digest, range?: { start: number; end?: number }) => {
      if ((await linkOf(repo, digest, true)) === undefined) throw blobUnknown(repo, digest);
      return blobs.get(digest, range, { repo });
    },

    /**
     * Upload sessions belong to their repository and to whom they were started for
     * (`binding`): every later step names both, and a session that does not match is unknown.
     */
    startUpload: (binding: UploadBinding) => blobs.startUpload(binding),
    /** `length`: the body's Content-Length when the client sent one (not chunked). */
    appendUpload: (
      binding: UploadBinding,
      id: string,
      body: Readable,
      offset?: number,
      length?: number,
    ) =>
      blobs.appendUpload(id, body, {
        binding,
        ...(offset !== undefined && { offset }),
        ...(length !== undefined && { length }),
      }),
    uploadStatus: (binding: UploadBinding, id: string) => blobs.uploadStatus(id, binding),
    cancelUpload: (binding: UploadBinding, id: string) => blobs.cancelUpload(id, binding),

    commitUpload: async (
      binding: UploadBinding,
      id: string,
      digest: Digest,
      body?: Readable,
      length?: number,
    ) => {
      const repo = binding.repo;
      if (await quota.applies(repo)) {
        // The blob's size as the session and the last chunk's Content-Length tell it (a
        // chunked last chunk counts as empty). Over quota: the session goes, nothing is linked.
        const { size } = await blobs.uploadStatus(id, binding);
        try {
          await quota.check(repo, [{ digest, size: size + (length ?? 0) }]);
        } catch (error) {
          body?.resume();
          await blobs.cancelUpload(id, binding).catch(() => undefined);
          throw error;
        }
      }
      const result = await blobs.commitUpload(id, {
        digest,
        repo: binding.repo,
        ...(binding.by !== undefined && { by: binding.by }),
        ...(body && { body }),
        ...(body && length !== undefined && { length }),
      });
      await waitFor(result.position);
      return result;
    },

    /**
     * Cross-repository mount: when `from` holds the blob, links it to `repo` by appending
     * `BlobUploaded{repo}` (no bytes move) with compare-and-swap on the blob's stream, so a GC
     * removal of the blob or of `from`'s link cannot slip in between; otherwise the caller
     * falls back to an upload session. Resolves with the link's position, or undefined.
     */
    mount: async (
      repo: RepoName,
      from: RepoName,
      digest: Digest,
      by?: Attribution,
    ): Promise<Position | undefined> => {
      if ((await linkOf(from, digest, true)) === undefined) return undefined;
      if ((await blobs.stat(digest)) === undefined) return undefined;
      const position = await guard.mount(
        repo,
        from,
        digest,
        (size) => quota.check(repo, [{ digest, size }]),
        by,
      );
      if (position !== undefined) await waitFor(position);
      return position;
    },

    /**
     * Deletes a blob. Links cannot be undone per repository (there is no unlink event), so
     * a delete removes the blob from the cluster (`BlobDeleted`) and is refused with
     * `UNSUPPORTED` (405) while another repository links it or a manifest references it:
     * it never takes content away from someone else.
     */
    deleteBlob: async (repo: RepoName, digest: Digest, by?: Attribution): Promise<Position> => {
      if ((await linkOf(repo, digest, true)) === undefined) throw blobUnknown(repo, digest);
      const deleted = await store.get<DeletedDoc>(projection, keys.deleted(digest));
      const repos = (await listAll<BlobLinkDoc>(keys.blobRepos(digest))).filter(
        (r) => r.id !== repo && isLinked(r.doc, deleted),
      );
      if (repos.length > 0) {
        throw new ShoalError(
          'UNSUPPORTED',
          `blob ${digest} is also in ${repos.length} other repositor${
            repos.length === 1 ? 'y' : 'ies'
          }; it is kept`,
          { detail: { digest } },
        );
      }
      const users = await store.list<PositionDoc>(projection, keys.usedBy(digest), { limit: 1 });
      if (users.length > 0) {
        throw new ShoalError(
          'UNSUPPORTED',
          `blob ${digest} is referenced by manifest ${users[0]?.id}; delete the manifest first`,
          { detail: { digest } },
        );
      }
      const position = await log.append([
        newEvent(attributedWriter(writer, by), 'BlobDeleted', { digest }),
      ]);
      await waitFor(position);
      return position;
    },

    /**
     * A manifest by tag or digest. One the repository lacks is pulled through when the
     * repository's namespace routes to an upstream registry (see `pullThrough`); a tag Shoal
     * already has is served from Shoal, rechecked upstream when its recheck time has passed.
     */
    getManifest: async (repo: RepoName, reference: string): Promise<StoredManifest> => {
      let digest: Digest | undefined;
      try {
        digest = await resolve(repo, reference);
      } catch (error) {
        if (!isShoalError(error, 'MANIFEST_UNKNOWN')) throw error;
      }
      let doc = digest === undefined ? undefined : await manifestDoc(repo, digest);
      if (doc !== undefined && digest !== undefined && !isDigestReference(reference)) {
        const current = await pullThrough.current(repo, reference as Tag, digest);
        if (current !== digest) [digest, doc] = [current, await manifestDoc(repo, current)];
      }
      if (doc === undefined || digest === undefined) {
        if (!isDigestReference(reference) && !parseTag(reference).ok) {
          throw manifestUnknown(repo, reference);
        }
        try {
          digest = await pullThrough.pull(repo, reference);
        } catch (error) {
          if (isShoalError(error, 'MANIFEST_UNKNOWN')) throw manifestUnknown(repo, reference);
          throw error;
        }
        doc = await manifestDoc(repo, digest);
        if (doc === undefined) throw manifestUnknown(repo, reference);
      }
      let bytes = cache.get(digest);
      if (bytes === undefined) {
        try {
          bytes = await readAll((await blobs.get(digest, undefined, { repo })).stream);
        } catch (error) {
          if (isShoalError(error, 'BLOB_UNKNOWN')) throw manifestUnknown(repo, reference);
          throw error;
        }
        cache.set(digest, bytes);
      }
      return { digest, mediaType: doc.mediaType, bytes };
    },

    /**
     * Stores a manifest: size cap, validation, every reference present in the repository,
     * quota, bytes stored as a blob, its children referenced on their streams (GC safety,
     * see `ReferenceGuard`), `ManifestPushed`, then the tag through build-index.
     */
    putManifest: async (
      repo: RepoName,
      reference: string,
      bytes: Buffer,
      contentType: string | undefined,
      options: {
        by?: Attribution;
        /** Whether an existing tag pointing elsewhere may be moved (see TagApi.put). */
        overwrite?: boolean;
      } = {},
    ): Promise<ManifestPutResult> => {
      const by = options.by;
      orThrow(checkManifestSize(bytes.length, limits.manifestMaxBytes));
      let tag: Tag | undefined;
      let digest: Digest;
      if (isDigestReference(reference)) {
        const wanted = digestParam(reference);
        digest = hashOf(wanted, bytes);
        if (digest !== wanted) {
          throw new ShoalError(
            'DIGEST_INVALID',
            `manifest digest is ${digest}, not ${wanted} as in the URL`,
            { detail: { digest: wanted } },
          );
        }
      } else {
        tag = orThrow(parseTag(reference));
        digest = hashOf('sha256:' as Digest, bytes);
      }
      const manifest = orThrow(parseManifest(bytes.toString('utf8'), contentType));
      const references = await checkReferences(repo, manifest);
      const subject = manifest.subject?.digest;
      await quota.check(repo, [{ digest, size: bytes.length }]);
      // The manifest's own bytes: stored now (that upload is a reference), or referenced
      // with its children when the repository has them already.
      const stored = (await linkOf(repo, digest, false)) !== undefined;
      if (!stored) {
        await blobs.put(digest, bytes, {
          repo,
          mediaType: manifest.mediaType,
          size: bytes.length,
          ...(by !== undefined && { by }),
        });
      }
      const refs = manifestReferences(manifest);
      let referencedAt: number;
      try {
        referencedAt = await guard.reference(
          repo,
          digest,
          {
            blobs: stored ? [...refs.blobs, digest] : refs.blobs,
            manifests: refs.manifests,
          },
          by,
        );
      } catch (error) {
        // Only its own bytes went (collected a moment ago): store them again, once.
        const gone = isShoalError(error, 'MANIFEST_BLOB_UNKNOWN')
          ? ((error.detail?.['digests'] as string[] | undefined) ?? [])
          : [];
        if (!stored || gone.length !== 1 || gone[0] !== digest) throw error;
        await blobs.put(digest, bytes, {
          repo,
          mediaType: manifest.mediaType,
          size: bytes.length,
          ...(by !== undefined && { by }),
        });
        referencedAt = await guard.reference(repo, digest, refs, by);
      }
      // Every push records the manifest again: a manifest the repository holds is touched
      // (its stream moves), so a GC removal decided before fails.
      let position = await recordManifest(repo, digest, bytes, manifest, references, {
        referencedAt,
        writer: attributedWriter(writer, by),
      });
      if (tag !== undefined) {
        const written = await tags.put({ repo, tag }, digest, {
          ...(by !== undefined && { by }),
          ...(options.overwrite !== undefined && { overwrite: options.overwrite }),
        });
        position = Math.max(position, written.position);
      }
      return { digest, position, ...(subject !== undefined && { subject }) };
    },

    /**
     * By tag: deletes the tag only. By digest: deletes every tag pointing at the manifest in
     * this repository, then the manifest (`ManifestDeleted`).
     */
    deleteManifest: async (
      repo: RepoName,
      reference: string,
      by?: Attribution,
    ): Promise<Position> => {
      const write = by === undefined ? {} : { by };
      if (!isDigestReference(reference)) {
        const tag = parseTag(reference);
        if (!tag.ok) throw manifestUnknown(repo, reference);
        try {
          return (await tags.delete({ repo, tag: tag.value }, write)).position;
        } catch (error) {
          if (isShoalError(error, 'TAG_UNKNOWN')) throw manifestUnknown(repo, reference);
          throw error;
        }
      }
      const digest = digestParam(reference);
      const doc = await manifestDoc(repo, digest);
      if (doc === undefined) throw manifestUnknown(repo, reference);
      for (const { id } of await listAll<PositionDoc>(keys.tagsOf(repo, digest))) {
        try {
          await tags.delete({ repo, tag: id as Tag }, write);
        } catch (error) {
          if (!isShoalError(error, 'TAG_UNKNOWN')) throw error;
        }
      }
      const position = await log.append([
        newEvent(attributedWriter(writer, by), 'ManifestDeleted', {
          repo,
          digest,
          ...(doc.references.length > 0 && { references: [...doc.references] }),
          ...(doc.subject !== undefined && { subject: doc.subject }),
        }),
      ]);
      await waitFor(position);
      cache.delete(digest);
      return position;
    },

    /** The referrers of a subject in a repository, optionally of one artifact type. */
    referrers: async (repo: RepoName, subject: Digest, artifactType?: string) => {
      const rows = await listAll<ReferrerDoc>(keys.referrers(repo, subject));
      const all = rows.map((r) => r.doc);
      return artifactType === undefined ? all : all.filter((r) => r.artifactType === artifactType);
    },

    /** Tags in lexical order after `last`; `NAME_UNKNOWN` for a repository never pushed to. */
    listTags: async (repo: RepoName, n?: number, last?: string): Promise<NamePage> => {
      if (n === 0) return { items: [], more: false };
      try {
        const { tags: names } = await tags.list(repo, {
          ...(n !== undefined && { n: n + 1 }),
          ...(last !== undefined && { last }),
        });
        return pageOf(names, n);
      } catch (error) {
        if (!isShoalError(error, 'NAME_UNKNOWN')) throw error;
      }
      // A repository is known once anything was pushed to it (a manifest or a blob), even
      // when its tags and manifests have all been deleted since.
      const [manifests, blobLinks] = await Promise.all([
        store.list(projection, repo, { limit: 1 }),
        store.list(projection, keys.blobLink(repo, '').partition, { limit: 1 }),
      ]);
      if (manifests.length === 0 && blobLinks.length === 0 && last === undefined) {
        throw new ShoalError('NAME_UNKNOWN', `repository ${repo} is not known`, {
          detail: { name: repo },
        });
      }
      return { items: [], more: false };
    },

    /**
     * Repositories holding at least one manifest, in lexical order after `last`: only those
     * `visible` passes (the caller may pull them), pages filled past the ones it hides.
     */
    catalog: async (
      n?: number,
      last?: string,
      visible: (repo: string) => boolean = () => true,
    ): Promise<NamePage> => {
      if (n === 0) return { items: [], more: false };
      const limit = Math.min(n ?? 10_000, 10_000);
      const repos: string[] = [];
      let after = last;
      for (;;) {
        const names = await store.partitions(projection, {
          ...(after !== undefined && { after }),
          limit: limit + 1,
        });
        for (const name of names) {
          if (!name.startsWith(internalPartitionPrefix) && visible(name)) repos.push(name);
        }
        if (names.length <= limit || repos.length > limit) return pageOf(repos, limit);
        after = names[names.length - 1];
      }
    },
  };
};

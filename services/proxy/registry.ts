import { createHash } from 'node:crypto';
import type { Readable } from 'node:stream';
import type {
  Digest,
  EventLog,
  Manifest,
  Position,
  ProjectionStore,
  RepoName,
  ShoalEvent,
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
  parseDigest,
  parseManifest,
  parseTag,
  truncate,
} from '../../domain';
import type {
  BlobLinkDoc,
  DeletedDoc,
  ManifestDoc,
  PositionDoc,
  ReferrerDoc,
} from '../../projections';
import {
  internalPartitionPrefix,
  isLinked,
  manifestIndexKeys as keys,
  manifestIndexProjection,
} from '../../projections';
import type { TagApi } from '../build-index/tagApi';
import type { BlobAccess } from '../origin/client/blobAccess';
import type { WriterContext } from '../shared/events';
import { newEvent } from '../shared/events';
import { createManifestCache } from './manifestCache';

const projection = manifestIndexProjection.name;

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

export type RegistryDeps = {
  readonly log: EventLog;
  readonly store: ProjectionStore;
  readonly blobs: BlobAccess;
  readonly tags: TagApi;
  readonly writer: WriterContext;
  /** Resolves once the proxy's projections have applied `position` (bounded wait). */
  readonly waitFor: (position: Position) => Promise<void>;
  readonly limits: { readonly manifestMaxBytes: number; readonly manifestCacheBytes: number };
};

export type Registry = ReturnType<typeof createRegistry>;

/** Parses a digest from a URL or query; `DIGEST_INVALID` otherwise. */
export const digestParam = (value: string): Digest => orThrow(parseDigest(value));

const manifestUnknown = (repo: string, reference: string) =>
  new ShoalError('MANIFEST_UNKNOWN', `manifest ${truncate(reference)} is not in ${repo}`, {
    detail: { name: repo, reference: truncate(reference) },
  });

const blobUnknown = (repo: string, digest: string) =>
  new ShoalError('BLOB_UNKNOWN', `blob ${truncate(digest)} is not in ${repo}`, {
    detail: { name: repo, digest: truncate(digest) },
  });

/** A reference in a URL is a digest when it has a colon: tags never do. */
export const isDigestReference = (reference: string): boolean => reference.includes(':');

const hashOf = (digest: Digest, bytes: Buffer): Digest =>
  `${digestAlgorithm(digest)}:${createHash(digestAlgorithm(digest)).update(bytes).digest('hex')}` as Digest;

/**
 * The registry's behaviour behind the OCI Distribution API, free of HTTP: what exists in a
 * repository (the manifest-index projection), blob bytes (BlobAccess, i.e. the origins), tags
 * (build-index's TagApi) and the events the proxy writes (ManifestPushed/Deleted, BlobUploaded
 * for mounts, BlobDeleted).
 *
 * Read-your-writes: every write waits for the proxy's projections to apply its position
 * before it returns; a read that misses catches up with the log's head once and looks again,
 * so a write made through another proxy or process is seen as soon as it is on the log.
 */
export const createRegistry = (deps: RegistryDeps) => {
  const { log, store, blobs, tags, writer, waitFor, limits } = deps;
  const cache = createManifestCache(limits.manifestCacheBytes);

  const syncToHead = async () => {
    const head = await log.head();
    if (head > 0) await waitFor(head);
  };

  /** Reads a document; on a miss, catches up with the log's head and reads once more. */
  const getFresh = async <D>(
    partition: string,
    id: string,
    present: (doc: D | undefined) => boolean = (doc) => doc !== undefined,
  ) => {
    let doc = await store.get<D>(projection, { partition, id });
    if (!present(doc)) {
      await syncToHead();
      doc = await store.get<D>(projection, { partition, id });
    }
    return doc;
  };

  const linkOf = async (repo: string, digest: string, fresh: boolean) => {
    const read = async () => {
      const [link, deleted] = await Promise.all([
        store.get<BlobLinkDoc>(projection, keys.blobLink(repo, digest)),
        store.get<DeletedDoc>(projection, keys.deleted(digest)),
      ]);
      return isLinked(link, deleted) ? link : undefined;
    };
    const link = await read();
    if (link !== undefined || !fresh) return link;
    await syncToHead();
    return read();
  };

  const manifestDoc = (repo: string, digest: string) => getFresh<ManifestDoc>(repo, digest);

  const listAll = async <D>(partition: string) => {
    const out: Array<{ id: string; doc: D }> = [];
    for (;;) {
      const after = out.length > 0 ? out[out.length - 1]?.id : undefined;
      const page = await store.list<D>(projection, partition, {
        ...(after !== undefined && { after }),
        limit: 1000,
      });
      out.push(...page);
      if (page.length < 1000) return out;
    }
  };

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

  const readAll = async (stream: Readable): Promise<Buffer> => {
    const chunks: Buffer[] = [];
    for await (const chunk of stream) chunks.push(chunk as Buffer);
    return Buffer.concat(chunks);
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
  const recordManifest = async (
    repo: RepoName,
    digest: Digest,
    bytes: Buffer,
    manifest: Manifest,
    references: readonly Digest[],
    options: { links?: readonly ShoalEvent[]; writer?: WriterContext } = {},
  ): Promise<Position> => {
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

  /** Who pull-through writes as, in the events the proxy appends for it. */
  const pullWriter: WriterContext = { ...writer, actor: 'pull-through' };
  /** Pulls running, by repository and reference: concurrent misses share one. */
  const pulls = new Map<string, Promise<Digest>>();
  /** An index of indexes of … is followed this deep at most. */
  const maxPullDepth = 4;
  /** Child manifests of an index pulled at once. */
  const pullConcurrency = 4;

  /**
   * Pull-through of a manifest a repository lacks: an origin fetches it from the upstream
   * registry the repository's namespace routes to (`BlobAccess.pullManifest`: verified, and
   * stored as a blob of the repository). The proxy then records it as a push would leave it:
   * the children of an index are pulled the same way (by digest), config and layers are
   * linked to the repository (`BlobUploaded`, their bytes stay upstream until a read fills an
   * origin from the `registry` backend), then `ManifestPushed`, and a tag is set through the
   * TagApi (so it has a history). Resolves with the manifest's digest.
   * `MANIFEST_UNKNOWN` when the repository is no pull-through namespace or the upstream lacks
   * the manifest. Concurrent pulls of one reference through this proxy share one pull.
   */
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
    orThrow(checkManifestSize(bytes.length, limits.manifestMaxBytes));
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
      cache.set(digest, bytes);
    }
    if (tag !== undefined) await tags.put({ repo, tag }, digest);
    return digest;
  };

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

    startUpload: (repo: RepoName) => blobs.startUpload({ repo }),
    /** `length`: the body's Content-Length when the client sent one (not chunked). */
    appendUpload: (id: string, body: Readable, offset?: number, length?: number) =>
      blobs.appendUpload(id, body, {
        ...(offset !== undefined && { offset }),
        ...(length !== undefined && { length }),
      }),
    uploadStatus: (id: string) => blobs.uploadStatus(id),
    cancelUpload: (id: string) => blobs.cancelUpload(id),

    commitUpload: async (
      repo: RepoName,
      id: string,
      digest: Digest,
      body?: Readable,
      length?: number,
    ) => {
      const result = await blobs.commitUpload(id, {
        digest,
        repo,
        ...(body && { body }),
        ...(body && length !== undefined && { length }),
      });
      await waitFor(result.position);
      return result;
    },

    /**
     * Cross-repository mount: when `from` holds the blob, links it to `repo` by appending
     * `BlobUploaded{repo}` (no bytes move) and returns; otherwise the caller falls back
     * to an upload session. Resolves with the link's position, or undefined.
     */
    mount: async (
      repo: RepoName,
      from: RepoName,
      digest: Digest,
    ): Promise<Position | undefined> => {
      const link = await linkOf(from, digest, true);
      if (link === undefined) return undefined;
      const existing = await linkOf(repo, digest, false);
      if (existing !== undefined) return existing.position;
      if ((await blobs.stat(digest)) === undefined) return undefined;
      const position = await log.append([
        newEvent(writer, 'BlobUploaded', {
          digest,
          size: link.size,
          repo,
          ...(link.mediaType !== undefined && { mediaType: link.mediaType }),
        }),
      ]);
      await waitFor(position);
      return position;
    },

    /**
     * Deletes a blob. Links cannot be undone per repository (there is no unlink event), so
     * a delete removes the blob from the cluster (`BlobDeleted`) and is refused with
     * `UNSUPPORTED` (405) while another repository links it or a manifest references it:
     * it never takes content away from someone else.
     */
    deleteBlob: async (repo: RepoName, digest: Digest): Promise<Position> => {
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
      const position = await log.append([newEvent(writer, 'BlobDeleted', { digest })]);
      await waitFor(position);
      return position;
    },

    /**
     * A manifest by tag or digest. One the repository lacks is pulled through when the
     * repository's namespace routes to an upstream registry (see `pullThrough`); a tag Shoal
     * already has is served from Shoal, without asking the upstream whether it moved there.
     */
    getManifest: async (repo: RepoName, reference: string): Promise<StoredManifest> => {
      let digest: Digest | undefined;
      try {
        digest = await resolve(repo, reference);
      } catch (error) {
        if (!isShoalError(error, 'MANIFEST_UNKNOWN')) throw error;
      }
      let doc = digest === undefined ? undefined : await manifestDoc(repo, digest);
      if (doc === undefined || digest === undefined) {
        if (!isDigestReference(reference) && !parseTag(reference).ok) {
          throw manifestUnknown(repo, reference);
        }
        try {
          digest = await pullThrough(repo, reference);
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
     * bytes stored as a blob, `ManifestPushed`, then the tag through build-index.
     * Pushing a manifest the repository already holds appends nothing but the tag move.
     */
    putManifest: async (
      repo: RepoName,
      reference: string,
      bytes: Buffer,
      contentType: string | undefined,
    ): Promise<ManifestPutResult> => {
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
      let position: Position;
      const existing = await store.get<ManifestDoc>(projection, keys.manifest(repo, digest));
      if (existing !== undefined) {
        position = existing.position;
      } else {
        await blobs.put(digest, bytes, {
          repo,
          mediaType: manifest.mediaType,
          size: bytes.length,
        });
        position = await recordManifest(repo, digest, bytes, manifest, references);
      }
      if (tag !== undefined) {
        const written = await tags.put({ repo, tag }, digest);
        position = Math.max(position, written.position);
      }
      return { digest, position, ...(subject !== undefined && { subject }) };
    },

    /**
     * By tag: deletes the tag only. By digest: deletes every tag pointing at the manifest in
     * this repository, then the manifest (`ManifestDeleted`).
     */
    deleteManifest: async (repo: RepoName, reference: string): Promise<Position> => {
      if (!isDigestReference(reference)) {
        const tag = parseTag(reference);
        if (!tag.ok) throw manifestUnknown(repo, reference);
        try {
          return (await tags.delete({ repo, tag: tag.value })).position;
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
          await tags.delete({ repo, tag: id as Tag });
        } catch (error) {
          if (!isShoalError(error, 'TAG_UNKNOWN')) throw error;
        }
      }
      const position = await log.append([
        newEvent(writer, 'ManifestDeleted', {
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

    /** Repositories holding at least one manifest, in lexical order after `last`. */
    catalog: async (n?: number, last?: string): Promise<NamePage> => {
      if (n === 0) return { items: [], more: false };
      const limit = Math.min(n ?? 10_000, 10_000);
      const names = await store.partitions(projection, {
        ...(last !== undefined && { after: last }),
        limit: limit + 1,
      });
      const repos = names.filter((name) => !name.startsWith(internalPartitionPrefix));
      return pageOf(repos, limit);
    },
  };
};

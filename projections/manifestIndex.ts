import { uniqueKeys } from './uniqueKeys';
import type { DocKey, Position, Projection, RecordedEvent } from '../domain';

/**
 * What the proxy needs to serve the OCI Distribution API: which manifests a repository holds,
 * which blobs are linked to it, the referrers of each subject, and which tags point at a
 * manifest. One projection, several kinds of documents told apart by partition:
 *
 * | partition                     | id                  | doc            | from                    |
 * | ----------------------------- | ------------------- | -------------- | ----------------------- |
 * | `<repo>`                      | manifest digest     | ManifestDoc    | ManifestPushed/Deleted* |
 * | `~blob/<repo>`                | blob digest         | BlobLinkDoc    | BlobUploaded/Unlinked   |
 * | `~repos/<digest>`             | repo                | BlobLinkDoc    | BlobUploaded/Unlinked   |
 * | `~deleted`                    | blob digest         | DeletedDoc     | BlobDeleted/Collected   |
 * | `~usedby/<digest>`            | `<repo>@<manifest>` | PositionDoc    | ManifestPushed/Deleted* |
 * | `~referrers/<repo>@<subject>` | referrer digest     | ReferrerDoc    | ManifestPushed/Deleted* |
 * | `~tags/<repo>@<digest>`       | tag                 | PositionDoc    | TagPushed/Deleted       |
 *
 * Repository names start with `[a-z0-9]`, so the partitions of repositories sort before every
 * `~` partition: the catalog is the partition list up to the first `~`.
 *
 * Blob links: a blob is linked to a repository by `BlobUploaded{repo}` — written by the origin
 * on an upload, and by the proxy on a cross-repository mount (a mount is a zero-byte upload of
 * bytes the cluster already holds). `BlobDeleted` cannot name the links it undoes, so it
 * records its position and a link counts only when it is newer (`isLinked`); `BlobCollected`
 * (GC) does the same, `BlobUnlinked` (GC) removes one repository's link. `Deleted*`: a
 * manifest removed by a client (`ManifestDeleted`) or by GC (`ManifestCollected`).
 */
export type ManifestDoc = {
  readonly mediaType: string;
  readonly size: number;
  readonly references: readonly string[];
  readonly subject?: string;
  readonly artifactType?: string;
  readonly annotations?: Readonly<Record<string, string>>;
  readonly position: Position;
};

export type BlobLinkDoc = {
  readonly size: number;
  readonly mediaType?: string;
  readonly position: Position;
};
export type DeletedDoc = { readonly position: Position };
export type PositionDoc = { readonly position: Position };

/** An entry of a referrers index (OCI image index `manifests[]`). */
export type ReferrerDoc = {
  readonly mediaType: string;
  readonly digest: string;
  readonly size: number;
  readonly artifactType?: string;
  readonly annotations?: Readonly<Record<string, string>>;
};

export type ManifestIndexDoc = ManifestDoc | BlobLinkDoc | DeletedDoc | PositionDoc | ReferrerDoc;

export const manifestIndexKeys = {
  manifest: (repo: string, digest: string): DocKey => ({ partition: repo, id: digest }),
  blobLink: (repo: string, digest: string): DocKey => ({ partition: `~blob/${repo}`, id: digest }),
  blobRepos: (digest: string) => `~repos/${digest}`,
  deleted: (digest: string): DocKey => ({ partition: '~deleted', id: digest }),
  usedBy: (digest: string) => `~usedby/${digest}`,
  referrers: (repo: string, subject: string) => `~referrers/${repo}@${subject}`,
  tagsOf: (repo: string, digest: string) => `~tags/${repo}@${digest}`,
} as const;

/** The first character of every partition that is not a repository. */
export const internalPartitionPrefix = '~';

/** A blob link is live when no `BlobDeleted` of that digest came after it. */
export const isLinked = (link: BlobLinkDoc | undefined, deleted: DeletedDoc | undefined) =>
  link !== undefined && (deleted === undefined || link.position > deleted.position);

const k = manifestIndexKeys;

const keysOf = (event: RecordedEvent): DocKey[] => {
  switch (event.type) {
    case 'ManifestPushed':
    case 'ManifestDeleted':
    case 'ManifestCollected': {
      const { repo, digest, subject } = event.data;
      const references = event.data.references ?? [];
      return uniqueKeys([
        k.manifest(repo, digest),
        ...references.map((ref) => ({ partition: k.usedBy(ref), id: `${repo}@${digest}` })),
        ...(subject !== undefined ? [{ partition: k.referrers(repo, subject), id: digest }] : []),
      ]);
    }
    case 'BlobUploaded':
      return [
        k.blobLink(event.data.repo, event.data.digest),
        { partition: k.blobRepos(event.data.digest), id: event.data.repo },
      ];
    case 'BlobUnlinked':
      return [
        k.blobLink(event.data.repo, event.data.digest),
        { partition: k.blobRepos(event.data.digest), id: event.data.repo },
      ];
    case 'BlobDeleted':
    case 'BlobCollected':
      return [k.deleted(event.data.digest)];
    case 'TagPushed': {
      const { repo, tag, digest, previous } = event.data;
      return uniqueKeys([
        { partition: k.tagsOf(repo, digest), id: tag },
        ...(previous !== undefined ? [{ partition: k.tagsOf(repo, previous), id: tag }] : []),
      ]);
    }
    case 'TagDeleted': {
      const { repo, tag, previous } = event.data;
      return previous === undefined ? [] : [{ partition: k.tagsOf(repo, previous), id: tag }];
    }
    default:
      return [];
  }
};

const evolve = (
  doc: ManifestIndexDoc | undefined,
  event: RecordedEvent,
  key: DocKey,
): ManifestIndexDoc | undefined => {
  switch (event.type) {
    case 'ManifestPushed': {
      const { repo, digest, mediaType, size, references, subject, artifactType, annotations } =
        event.data;
      const optional = {
        ...(artifactType !== undefined && { artifactType }),
        ...(annotations !== undefined && { annotations }),
      };
      if (key.partition === repo) {
        return {
          mediaType,
          size,
          references,
          ...(subject !== undefined && { subject }),
          ...optional,
          position: event.position,
        } satisfies ManifestDoc;
      }
      if (subject !== undefined && key.partition === k.referrers(repo, subject)) {
        return { mediaType, digest, size, ...optional } satisfies ReferrerDoc;
      }
      return { position: event.position } satisfies PositionDoc;
    }
    case 'ManifestDeleted':
    case 'ManifestCollected':
    case 'BlobUnlinked':
      return undefined;
    case 'BlobUploaded':
      return {
        size: event.data.size,
        ...(event.data.mediaType !== undefined && { mediaType: event.data.mediaType }),
        position: event.position,
      } satisfies BlobLinkDoc;
    case 'BlobDeleted':
    case 'BlobCollected':
      return { position: event.position } satisfies DeletedDoc;
    case 'TagPushed':
      return key.partition === k.tagsOf(event.data.repo, event.data.digest)
        ? ({ position: event.position } satisfies PositionDoc)
        : undefined;
    case 'TagDeleted':
      return undefined;
    default:
      return doc;
  }
};

/** repo → manifests, blob links, referrers and tags-by-digest: the proxy's read model. */
export const manifestIndexProjection: Projection<ManifestIndexDoc> = {
  name: 'manifest-index',
  version: 2,
  eventTypes: [
    'ManifestPushed',
    'ManifestDeleted',
    'ManifestCollected',
    'BlobUploaded',
    'BlobUnlinked',
    'BlobDeleted',
    'BlobCollected',
    'TagPushed',
    'TagDeleted',
  ],
  keysOf,
  evolve,
};

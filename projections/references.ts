import { uniqueKeys } from './uniqueKeys';
import type { DocKey, Position, Projection, RecordedEvent } from '../domain';
import { manifestKinds, namespacesOf } from '../domain';

/** When something happened on the log: position and writer time (ISO 8601). */
export type Touch = { readonly position: Position; readonly at: string };

/**
 * A manifest of one repository: what it references, the tags that point at it, and when it
 * was last pushed or referenced by an index. Partition `manifests`, id `<repo>@<digest>`. A
 * document may hold tags only (a tag set through build-index on a digest never pushed here).
 */
export type ManifestRefDoc = {
  readonly manifest?: {
    readonly mediaType: string;
    readonly size: number;
    /** Config and layers. */
    readonly blobs: readonly string[];
    /** Child manifests (an index's). */
    readonly manifests: readonly string[];
    readonly subject?: string;
  };
  /** tag → its last push (a move counts as a push). */
  readonly tags: Readonly<Record<string, Touch>>;
  /** Last `ManifestPushed` or `ManifestReferenced`. */
  readonly touched?: Touch;
};

/** A blob: its links to repositories and when it was last uploaded, mounted or referenced. */
export type BlobRefDoc = {
  readonly size: number;
  readonly mediaType?: string;
  /** repo → its last upload or mount there. */
  readonly links: Readonly<Record<string, Touch>>;
  readonly touched: Touch;
  /** Position of a client's `BlobDeleted`: links older than it are gone. */
  readonly deleted?: Position;
};

/** One user of a blob or child manifest: partition `~usedby/<digest>`, id `<repo>@<manifest>`. */
export type UsedByDoc = { readonly position: Position };

/** A blob counted in a namespace: partition `~ns/<namespace>`, id = digest. */
export type NamespaceBlobDoc = { readonly size: number; readonly repos: readonly string[] };

/** A namespace's usage: partition `usage`, id = namespace. */
export type UsageDoc = { readonly bytes: number; readonly blobs: number };

export type ReferencesDoc = ManifestRefDoc | BlobRefDoc | UsedByDoc | NamespaceBlobDoc | UsageDoc;

export const referencesKeys = {
  manifest: (repo: string, digest: string): DocKey => ({
    partition: 'manifests',
    id: `${repo}@${digest}`,
  }),
  blob: (digest: string): DocKey => ({ partition: 'blobs', id: digest }),
  usedBy: (digest: string, repo: string, manifest: string): DocKey => ({
    partition: `~usedby/${digest}`,
    id: `${repo}@${manifest}`,
  }),
  namespaceBlob: (namespace: string, digest: string): DocKey => ({
    partition: `~ns/${namespace}`,
    id: digest,
  }),
  usage: (namespace: string): DocKey => ({ partition: 'usage', id: namespace }),
} as const;

/** `<repo>@<digest>` back to its parts (repository names have no `@`). */
export const splitManifestId = (id: string): { repo: string; digest: string } => {
  const at = id.indexOf('@');
  return { repo: id.slice(0, at), digest: id.slice(at + 1) };
};

const k = referencesKeys;
const touchOf = (event: RecordedEvent): Touch => ({
  position: event.position,
  at: event.metadata.at,
});

/** The namespace documents (per-namespace blob and usage) a link to `repos` touches. */
const namespaceKeys = (digest: string, repos: readonly string[]): DocKey[] => {
  const namespaces = [...new Set(repos.flatMap(namespacesOf))];
  return namespaces.flatMap((ns) => [k.namespaceBlob(ns, digest), k.usage(ns)]);
};

const keysOf = (event: RecordedEvent): DocKey[] => {
  switch (event.type) {
    case 'ManifestPushed':
    case 'ManifestDeleted':
    case 'ManifestCollected': {
      const { repo, digest } = event.data;
      return uniqueKeys([
        k.manifest(repo, digest),
        ...(event.data.references ?? []).map((ref) => k.usedBy(ref, repo, digest)),
      ]);
    }
    case 'ManifestReferenced':
      return [k.manifest(event.data.repo, event.data.digest)];
    case 'TagPushed':
    case 'TagDeleted': {
      const { repo, previous } = event.data;
      const digest = event.type === 'TagPushed' ? event.data.digest : undefined;
      return uniqueKeys([
        ...(digest !== undefined ? [k.manifest(repo, digest)] : []),
        ...(previous !== undefined ? [k.manifest(repo, previous)] : []),
      ]);
    }
    case 'BlobUploaded':
    case 'BlobUnlinked':
      return [k.blob(event.data.digest), ...namespaceKeys(event.data.digest, [event.data.repo])];
    case 'BlobReferenced':
    case 'BlobDeleted':
      return [k.blob(event.data.digest)];
    case 'BlobCollected':
      return [k.blob(event.data.digest), ...namespaceKeys(event.data.digest, event.data.repos)];
    default:
      return [];
  }
};

const kinds = manifestKinds;

const evolveManifest = (
  doc: ManifestRefDoc | undefined,
  event: RecordedEvent,
  key: DocKey,
): ManifestRefDoc | undefined => {
  const tags = doc?.tags ?? {};
  const withoutTag = (tag: string): ManifestRefDoc | undefined => {
    if (doc === undefined || !(tag in tags)) return doc;
    const rest = { ...tags };
    delete rest[tag];
    if (doc.manifest === undefined && Object.keys(rest).length === 0) return undefined;
    return { ...doc, tags: rest };
  };
  switch (event.type) {
    case 'ManifestPushed': {
      const { mediaType, size, references, subject } = event.data;
      const index = kinds[mediaType] === 'index';
      return {
        manifest: {
          mediaType,
          size,
          blobs: index ? [] : references,
          manifests: index ? references : [],
          ...(subject !== undefined && { subject }),
        },
        tags,
        touched: touchOf(event),
      };
    }
    case 'ManifestReferenced':
      return doc?.manifest === undefined ? doc : { ...doc, touched: touchOf(event) };
    case 'ManifestDeleted':
    case 'ManifestCollected':
      if (doc === undefined) return undefined;
      return Object.keys(tags).length === 0 ? undefined : { tags };
    case 'TagPushed': {
      const { repo, tag, digest } = event.data;
      if (key.id !== `${repo}@${digest}`) return withoutTag(tag);
      return { ...(doc ?? {}), tags: { ...tags, [tag]: touchOf(event) } };
    }
    case 'TagDeleted':
      return withoutTag(event.data.tag);
    default:
      return doc;
  }
};

const evolveBlob = (doc: BlobRefDoc | undefined, event: RecordedEvent): BlobRefDoc | undefined => {
  switch (event.type) {
    case 'BlobUploaded': {
      const touch = touchOf(event);
      const mediaType = event.data.mediaType ?? doc?.mediaType;
      return {
        size: event.data.size,
        ...(mediaType !== undefined && { mediaType }),
        links: { ...(doc?.links ?? {}), [event.data.repo]: touch },
        touched: touch,
        ...(doc?.deleted !== undefined && { deleted: doc.deleted }),
      };
    }
    case 'BlobReferenced':
      return doc === undefined ? undefined : { ...doc, touched: touchOf(event) };
    case 'BlobUnlinked': {
      if (doc === undefined) return undefined;
      const links = { ...doc.links };
      delete links[event.data.repo];
      return { ...doc, links };
    }
    case 'BlobDeleted':
      return doc === undefined ? undefined : { ...doc, deleted: event.position };
    case 'BlobCollected':
      return undefined;
    default:
      return doc;
  }
};

/**
 * The namespace documents of one link change: a blob counts once per namespace, however many
 * of its repositories link it (`~ns/<ns>` lists them), and `usage/<ns>` sums those blobs.
 */
const evolveNamespaces = (
  docs: ReadonlyArray<ReferencesDoc | undefined>,
  event: RecordedEvent,
  keys: readonly DocKey[],
): Array<ReferencesDoc | undefined> => {
  const out = [...docs];
  for (let i = 1; i + 1 < keys.length; i += 2) {
    const blob = docs[i] as NamespaceBlobDoc | undefined;
    const usage = (docs[i + 1] as UsageDoc | undefined) ?? { bytes: 0, blobs: 0 };
    let next: NamespaceBlobDoc | undefined = blob;
    if (event.type === 'BlobUploaded') {
      const { repo, size } = event.data;
      const repos = blob?.repos ?? [];
      next = repos.includes(repo) ? blob : { size: blob?.size ?? size, repos: [...repos, repo] };
    } else if (event.type === 'BlobUnlinked') {
      const repos = (blob?.repos ?? []).filter((r) => r !== event.data.repo);
      next = blob === undefined || repos.length === 0 ? undefined : { ...blob, repos };
    } else if (event.type === 'BlobCollected') {
      next = undefined;
    }
    out[i] = next;
    if (blob === undefined && next !== undefined) {
      out[i + 1] = { bytes: usage.bytes + next.size, blobs: usage.blobs + 1 };
    } else if (blob !== undefined && next === undefined) {
      const after = { bytes: usage.bytes - blob.size, blobs: usage.blobs - 1 };
      out[i + 1] = after.blobs <= 0 ? undefined : after;
    } else {
      out[i + 1] = docs[i + 1];
    }
  }
  return out;
};

/**
 * What references what, for GC and quotas: every manifest with the tags pointing at it and
 * its children (an index's manifests, an image's config and layers, its `subject`); every blob
 * with the repositories that link it, the manifests that use it (`~usedby/`), and the position
 * and time it was last uploaded, mounted or referenced; and per repository namespace the
 * distinct blobs linked in it and their bytes (quotas). Pure; rebuilt and verified by replay
 * like every projection.
 */
export const referencesProjection: Projection<ReferencesDoc> = {
  name: 'references',
  version: 1,
  eventTypes: [
    'ManifestPushed',
    'ManifestReferenced',
    'ManifestDeleted',
    'ManifestCollected',
    'TagPushed',
    'TagDeleted',
    'BlobUploaded',
    'BlobReferenced',
    'BlobUnlinked',
    'BlobDeleted',
    'BlobCollected',
  ],
  keysOf,
  // A namespace's usage depends on its blob document: the runner calls `evolveAll`.
  evolve: () => {
    throw new Error('the references projection evolves documents together (evolveAll)');
  },
  evolveAll: (docs, event, keys) => {
    switch (event.type) {
      case 'ManifestPushed':
      case 'ManifestDeleted':
      case 'ManifestCollected':
        return keys.map((key, i) => {
          if (key.partition === 'manifests') {
            return evolveManifest(docs[i] as ManifestRefDoc | undefined, event, key);
          }
          return event.type === 'ManifestPushed' ? { position: event.position } : undefined;
        });
      case 'ManifestReferenced':
      case 'TagPushed':
      case 'TagDeleted':
        return keys.map((key, i) =>
          evolveManifest(docs[i] as ManifestRefDoc | undefined, event, key),
        );
      case 'BlobUploaded':
      case 'BlobUnlinked':
      case 'BlobCollected': {
        const out = evolveNamespaces(docs, event, keys);
        out[0] = evolveBlob(docs[0] as BlobRefDoc | undefined, event);
        return out;
      }
      case 'BlobReferenced':
      case 'BlobDeleted':
        return [evolveBlob(docs[0] as BlobRefDoc | undefined, event)];
      default:
        return docs;
    }
  },
};

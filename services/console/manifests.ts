import type { ProjectionStore } from '../../domain';
import { ShoalError, isShoalError, orThrow, parseDigest } from '../../domain';
import type { BlobDoc, ManifestDoc, PositionDoc, ReferrerDoc } from '../../projections';
import {
  blobIndexProjection,
  blobPartition,
  manifestIndexKeys,
  manifestIndexProjection,
} from '../../projections';
import type { ManifestContents } from './manifestContents';
import { platformString } from './manifestContents';
import { checkRepo } from './repositories';
import { listUpTo } from './storeReads';
import type { Viewer } from './viewer';

const manifests = manifestIndexProjection.name;
const blobs = blobIndexProjection.name;

/** A blob a manifest names, with where the cluster keeps it. */
export type BlobRow = {
  readonly digest: string;
  readonly mediaType: string;
  readonly size: number;
  /** Origins holding a copy and backends it was written back to (blob index). */
  readonly origins?: readonly string[];
  readonly backends?: readonly string[];
};

/**
 * One manifest of a repository for the console: what the log recorded (media type, size,
 * subject, annotations, its tags and referrers) and, read from the proxy, what it contains
 * (config, layers with sizes and where they are held, an index's children and platforms).
 */
export const createManifestReads = (deps: {
  store: ProjectionStore;
  contents: ManifestContents;
}) => {
  const { store, contents } = deps;

  const blobRows = async (descriptors: ReadonlyArray<Omit<BlobRow, 'origins' | 'backends'>>) => {
    const docs = await store.getMany(
      blobs,
      descriptors.map((d) => ({ partition: blobPartition, id: d.digest })),
    );
    return descriptors.map((d): BlobRow => {
      const doc = docs.get(`${blobPartition}\u0000${d.digest}`) as BlobDoc | undefined;
      return {
        digest: d.digest,
        mediaType: d.mediaType,
        size: d.size,
        ...(doc !== undefined && { origins: doc.origins, backends: doc.backends }),
      };
    });
  };

  const describeContents = async (repo: string, digest: string) => {
    try {
      const parsed = await contents.manifest(repo, orThrow(parseDigest(digest)));
      const config = parsed.config;
      const [configRows, layers, summary, children] = await Promise.all([
        config === undefined ? [] : blobRows([config]),
        blobRows(parsed.layers),
        config === undefined ? {} : contents.config(repo, config).catch(() => ({})),
        Promise.all(
          parsed.manifests.map(async (child) => ({
            digest: child.digest,
            mediaType: child.mediaType,
            size: child.size,
            ...(platformString(child.platform) !== undefined && {
              platform: platformString(child.platform),
            }),
            inRepository:
              (await store.get(manifests, manifestIndexKeys.manifest(repo, child.digest))) !==
              undefined,
          })),
        ),
      ]);
      return {
        kind: parsed.kind,
        ...(configRows[0] !== undefined && { config: { ...configRows[0], ...summary } }),
        layers,
        children,
      };
    } catch (error) {
      const message = isShoalError(error) ? error.message : 'the proxy could not be read';
      return { contentError: message };
    }
  };

  return {
    async manifest(viewer: Viewer, repo: string, digest: string) {
      const name = checkRepo(viewer, repo);
      const checked = orThrow(parseDigest(digest));
      const doc = await store.get<ManifestDoc>(
        manifests,
        manifestIndexKeys.manifest(name, checked),
      );
      if (doc === undefined) {
        throw new ShoalError('MANIFEST_UNKNOWN', `manifest ${checked} is not in ${name}`);
      }
      const [referrers, tags, described] = await Promise.all([
        listUpTo<ReferrerDoc>(store, manifests, manifestIndexKeys.referrers(name, checked), 1000),
        listUpTo<PositionDoc>(store, manifests, manifestIndexKeys.tagsOf(name, checked), 1000),
        describeContents(name, checked),
      ]);
      return {
        repo: name,
        digest: checked,
        mediaType: doc.mediaType,
        size: doc.size,
        position: doc.position,
        ...(doc.subject !== undefined && { subject: doc.subject }),
        ...(doc.artifactType !== undefined && { artifactType: doc.artifactType }),
        ...(doc.annotations !== undefined && { annotations: doc.annotations }),
        tags: tags.items.map((t) => t.id),
        referrers: referrers.items.map((r) => r.doc),
        ...described,
      };
    },
  };
};

export type ManifestReads = ReturnType<typeof createManifestReads>;

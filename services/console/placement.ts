import type { ProjectionStore } from '../../domain';
import { ShoalError, orThrow, parseDigest } from '../../domain';
import { owners } from '../../domain/placement';
import type { BlobDoc, RingMemberDoc } from '../../projections';
import {
  blobIndexProjection,
  blobPartition,
  placementPartitions,
  placementProjection,
} from '../../projections';
import { listUpTo } from './storeReads';
import type { Viewer } from './viewer';
import { mayPullAny } from './viewer';

/** One blob and where it stands: holders, owners by the ring, write-back. */
export type BlobPlacement = {
  readonly digest: string;
  readonly size: number;
  readonly mediaType?: string;
  readonly repos: readonly string[];
  /** Origins that reported a copy. */
  readonly origins: readonly string[];
  /** The ring members that should hold it (rendezvous hashing over the current ring). */
  readonly owners: readonly string[];
  /** Owners without a copy yet: they fill it from a holder or the backend when read. */
  readonly missingOwners: readonly string[];
  /** Backends it was written back to; empty while the write-back is pending. */
  readonly backends: readonly string[];
};

/**
 * The ring and blob placement for the console, from the placement and blob-index
 * projections: members, which origins hold each blob and which should (rendezvous hashing
 * with the origins' replica count), and whether it was written back.
 */
export const createPlacementReads = (deps: { store: ProjectionStore; replicas: number }) => {
  const { store, replicas } = deps;

  const ring = async () => {
    const { items } = await listUpTo<RingMemberDoc>(
      store,
      placementProjection.name,
      placementPartitions.ring,
      1000,
    );
    return items.map(({ id, doc }) => ({ id, address: doc.address, position: doc.position }));
  };

  const placementOf = (digest: string, doc: BlobDoc, members: readonly string[]) => {
    const owning = owners(digest, members, replicas);
    return {
      digest,
      size: doc.size,
      ...(doc.mediaType !== undefined && { mediaType: doc.mediaType }),
      repos: doc.repos,
      origins: doc.origins,
      owners: owning,
      missingOwners: owning.filter((id) => !doc.origins.includes(id)),
      backends: doc.backends,
    } satisfies BlobPlacement;
  };

  /** Keeps only what the viewer may see of a blob's repositories. */
  const visible = (viewer: Viewer, blob: BlobPlacement): BlobPlacement | undefined => {
    if (!mayPullAny(viewer, blob.repos)) return undefined;
    return viewer.seesCluster ? blob : { ...blob, repos: blob.repos.filter(viewer.mayPull) };
  };

  return {
    async ring(viewer: Viewer) {
      if (!viewer.seesCluster) return { replicas, members: [] };
      return { replicas, members: await ring() };
    },

    /**
     * Blobs in digest order from `after` (or those starting with `prefix`), at most `limit`,
     * optionally only those awaiting write-back or missing on an owner; scans at most
     * `scanLimit` blobs and says how many of those were pending.
     */
    async blobs(
      viewer: Viewer,
      options: {
        after?: string;
        prefix?: string;
        limit: number;
        only?: 'pending' | 'under-placed';
        scanLimit?: number;
      },
    ) {
      const members = (await ring()).map((m) => m.id);
      const scanLimit = options.scanLimit ?? 5000;
      const prefix = options.prefix ?? '';
      let after = options.after ?? (prefix === '' ? undefined : prefix.slice(0, -1));
      const rows: BlobPlacement[] = [];
      const counts = { scanned: 0, pendingWriteBack: 0, underPlaced: 0 };
      let more = true;
      while (more && rows.length < options.limit && counts.scanned < scanLimit) {
        const page = await store.list<BlobDoc>(blobIndexProjection.name, blobPartition, {
          ...(after !== undefined && { after }),
          limit: 500,
        });
        more = page.length === 500;
        for (const { id, doc } of page) {
          after = id;
          if (!id.startsWith(prefix)) {
            if (id < prefix) continue;
            more = false;
            break;
          }
          counts.scanned += 1;
          const blob = visible(viewer, placementOf(id, doc, members));
          if (blob === undefined) continue;
          const pending = blob.backends.length === 0;
          const under = blob.missingOwners.length > 0;
          if (pending) counts.pendingWriteBack += 1;
          if (under) counts.underPlaced += 1;
          if (options.only === 'pending' && !pending) continue;
          if (options.only === 'under-placed' && !under) continue;
          rows.push(blob);
          if (rows.length >= options.limit || counts.scanned >= scanLimit) break;
        }
        if (page.length === 0) more = false;
      }
      return { blobs: rows, counts, ...(more && after !== undefined && { next: after }) };
    },

    async blob(viewer: Viewer, digest: string) {
      const checked = orThrow(parseDigest(digest));
      const doc = await store.get<BlobDoc>(blobIndexProjection.name, {
        partition: blobPartition,
        id: checked,
      });
      const members = (await ring()).map((m) => m.id);
      const blob =
        doc === undefined ? undefined : visible(viewer, placementOf(checked, doc, members));
      if (blob === undefined) throw new ShoalError('BLOB_UNKNOWN', `blob ${checked} is not known`);
      return blob;
    },
  };
};

export type PlacementReads = ReturnType<typeof createPlacementReads>;

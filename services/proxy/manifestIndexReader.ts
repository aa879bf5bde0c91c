import type { EventLog, Position, ProjectionStore } from '../../domain';
import type { BlobLinkDoc, DeletedDoc, ManifestDoc } from '../../projections';
import { isLinked, manifestIndexKeys as keys, manifestIndexProjection } from '../../projections';

const projection = manifestIndexProjection.name;

/**
 * Reads of the proxy's manifest-index projection, shared by the distribution API and
 * pull-through. A read that misses may catch up with the log's head once and look again, so
 * a write made through another proxy or process is seen as soon as it is on the log.
 */
export const createManifestIndexReader = (deps: {
  readonly log: EventLog;
  readonly store: ProjectionStore;
  /** Resolves once the proxy's projections have applied `position` (bounded wait). */
  readonly waitFor: (position: Position) => Promise<void>;
}) => {
  const { log, store, waitFor } = deps;

  const syncToHead = async () => {
    const head = await log.head();
    if (head > 0) await waitFor(head);
  };

  return {
    /** Waits until the projections have applied the log's current head. */
    syncToHead,

    /**
     * The link of a blob to a repository, unless the blob was deleted since; with `fresh`, a
     * miss catches up with the log's head and looks again.
     */
    linkOf: async (repo: string, digest: string, fresh: boolean) => {
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
    },

    /** A manifest of a repository; a miss catches up with the log's head and looks again. */
    manifestDoc: async (repo: string, digest: string) => {
      const key = { partition: repo, id: digest };
      const doc = await store.get<ManifestDoc>(projection, key);
      if (doc !== undefined) return doc;
      await syncToHead();
      return store.get<ManifestDoc>(projection, key);
    },

    /** Every document of a partition, in id order. */
    listAll: async <D>(partition: string) => {
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
    },
  };
};

export type ManifestIndexReader = ReturnType<typeof createManifestIndexReader>;

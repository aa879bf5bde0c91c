import type { ProjectionStore } from '../../domain';
import { owners as ownersOf } from '../../domain/placement';
import type { BlobHoldersDoc, RingMember, RingMemberDoc } from '../../projections';
import { placementPartitions, placementProjection } from '../../projections';

const pageSize = 1000;

/**
 * The ring as this origin sees it: members from the placement projection (so every process
 * that has applied the same events agrees), owners by rendezvous hashing over them, and the
 * origins that reported holding a blob.
 */
export const createRingView = (deps: {
  store: ProjectionStore;
  selfId: string;
  replicas: number;
}) => {
  const { store, selfId, replicas } = deps;

  const members = async (): Promise<RingMember[]> => {
    const out: RingMember[] = [];
    let after: string | undefined;
    for (;;) {
      const rows = await store.list<RingMemberDoc>(
        placementProjection.name,
        placementPartitions.ring,
        { ...(after !== undefined && { after }), limit: pageSize },
      );
      for (const row of rows) out.push({ id: row.id, address: row.doc.address });
      if (rows.length < pageSize) return out;
      after = rows[rows.length - 1]?.id;
    }
  };

  /** The digest's owners, best first. */
  const owners = async (digest: string): Promise<RingMember[]> => {
    const all = await members();
    const byId = new Map(all.map((m) => [m.id, m]));
    return ownersOf(
      digest,
      all.map((m) => m.id),
      replicas,
    ).map((id) => byId.get(id) as RingMember);
  };

  return {
    selfId,
    replicas,
    members,
    owners,
    isOwner: async (digest: string): Promise<boolean> =>
      (await owners(digest)).some((m) => m.id === selfId),
    /** A page of every blob's reported holders, in digest order (for the ring healer). */
    holdings: async (options: { after?: string; limit: number }) =>
      (
        await store.list<BlobHoldersDoc>(placementProjection.name, placementPartitions.blobs, {
          ...(options.after !== undefined && { after: options.after }),
          limit: options.limit,
        })
      ).map((row) => ({ digest: row.id, origins: row.doc.origins })),
    /** Origins that reported a copy of the digest (`BlobPlaced`), in report order. */
    holders: async (digest: string): Promise<string[]> => {
      const doc = await store.get<BlobHoldersDoc>(placementProjection.name, {
        partition: placementPartitions.blobs,
        id: digest,
      });
      return [...(doc?.origins ?? [])];
    },
  };
};

export type RingView = ReturnType<typeof createRingView>;

import type { ProjectionStore } from '../../domain';
import type { ReplicationRuleDoc } from '../../projections';
import { replicationPartitions, replicationProjection } from '../../projections';

/** Every rule the `replication` projection holds, removed ones included, by id. */
export const readRules = async (store: ProjectionStore): Promise<ReplicationRuleDoc[]> => {
  const out: ReplicationRuleDoc[] = [];
  let after: string | undefined;
  for (;;) {
    const rows = await store.list<ReplicationRuleDoc>(
      replicationProjection.name,
      replicationPartitions.rules,
      { ...(after !== undefined && { after }), limit: 1000 },
    );
    out.push(...rows.map((r) => r.doc));
    if (rows.length < 1000) return out;
    after = rows[rows.length - 1]?.id;
  }
};

import type { Clock, EventLog, ProjectionStore } from '../../domain';
import type { ReplicationRuleDoc } from '../../projections';
import { isActiveRule, replicationPartitions, replicationProjection } from '../../projections';
import type { ReplicationApi, RuleStatus } from '../replicator/client/replicationApi';
import { listUpTo } from './storeReads';
import type { Viewer } from './viewer';

/**
 * Replication for the console: the replicator's own status (state, lag in positions and
 * seconds, changes in flight) through its client; when it cannot be reached, what the log
 * recorded (the console's replication projection), with lag in positions as an upper bound
 * and the reason the replicator is not answering. Rules belong to no repository: only
 * viewers of the cluster see them.
 */
export const createReplicationReads = (deps: {
  api: ReplicationApi | undefined;
  log: EventLog;
  store: ProjectionStore;
  clock: Clock;
}) => {
  const fromLog = async (reason: string) => {
    const head = await deps.log.head();
    const { items } = await listUpTo<ReplicationRuleDoc>(
      deps.store,
      replicationProjection.name,
      replicationPartitions.rules,
      1000,
    );
    const rules = items.map(({ doc }): RuleStatus => {
      const active = isActiveRule(doc);
      const behind = active ? Math.max(0, head - doc.lastPosition) : 0;
      return {
        id: doc.id,
        ...(doc.name !== undefined && { name: doc.name }),
        repoPattern: doc.repoPattern,
        tagPattern: doc.tagPattern,
        destination: doc.destination,
        backfill: doc.backfill,
        state: active ? 'not-running' : 'removed',
        lastPosition: doc.lastPosition,
        settled: doc.lastPosition,
        // Without the replicator, events after the settled position may or may not match.
        lag: { positions: behind, seconds: 0 },
        replicated: doc.replicated,
        skipped: doc.skipped,
        failures: doc.failures,
        ...(doc.lastReplicated !== undefined && { lastReplicated: doc.lastReplicated }),
      };
    });
    return {
      source: 'log' as const,
      reason,
      head,
      at: new Date(deps.clock.now()).toISOString(),
      replicator: 'not-running' as const,
      rules,
    };
  };

  return {
    async status(viewer: Viewer, minPosition?: number) {
      if (!viewer.seesCluster) {
        return { source: 'none' as const, head: 0, at: '', replicator: 'not-running', rules: [] };
      }
      if (deps.api === undefined) return fromLog('no replicator URL is configured');
      try {
        const status = await deps.api.status(minPosition === undefined ? {} : { minPosition });
        return { source: 'replicator' as const, ...status };
      } catch (error) {
        return fromLog((error as Error).message);
      }
    },
  };
};

export type ReplicationReads = ReturnType<typeof createReplicationReads>;

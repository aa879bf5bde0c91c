import type { Registry } from 'prom-client';
import { Counter, Gauge } from 'prom-client';
import type { ReplicationStatus } from './client/replicationApi';
import type { ReplicatorMetrics } from './replicator';

/**
 * Replication metrics on the `/metrics` of the process that runs the replicator (build-index's, or `shoal replicator`'s): per rule (label `rule`, the id, and
 * `destination`) the lag in log positions and seconds, the recorded position, failures in a
 * row, and counters of replicated changes and failures. Gauges are computed from the status
 * at scrape time (one status per scrape).
 */
export const registerReplicationMetrics = (
  registry: Registry,
  status: () => Promise<ReplicationStatus>,
): ReplicatorMetrics => {
  let snapshot: { at: number; value: Promise<ReplicationStatus> } | undefined;
  const current = () => {
    const now = Date.now();
    if (snapshot === undefined || now - snapshot.at > 500) {
      snapshot = { at: now, value: status() };
      snapshot.value.catch(() => undefined);
    }
    return snapshot.value;
  };
  const labelNames = ['rule', 'destination'] as const;
  const gauge = (
    name: string,
    help: string,
    value: (rule: ReplicationStatus['rules'][number]) => number,
  ) =>
    new Gauge({
      name,
      help,
      labelNames,
      registers: [registry],
      async collect() {
        this.reset();
        const { rules } = await current();
        for (const rule of rules) {
          this.set({ rule: rule.id, destination: rule.destination }, value(rule));
        }
      },
    });
  gauge(
    'shoal_replication_lag_positions',
    'log positions from the oldest unreplicated matching change to the head (0: caught up)',
    (r) => r.lag.positions,
  );
  gauge(
    'shoal_replication_lag_seconds',
    'age of the oldest unreplicated matching change (0: caught up)',
    (r) => r.lag.seconds,
  );
  gauge(
    'shoal_replication_position',
    'source log position up to which every matching change is replicated',
    (r) => r.settled,
  );
  gauge(
    'shoal_replication_consecutive_failures',
    'failures since the last successful replication',
    (r) => r.failures.consecutive,
  );
  const changes = new Counter({
    name: 'shoal_replication_changes_total',
    help: 'tag changes replicated, by what was done at the destination',
    labelNames: [...labelNames, 'outcome'] as const,
    registers: [registry],
  });
  const failures = new Counter({
    name: 'shoal_replication_failures_total',
    help: 'failed replication attempts',
    labelNames,
    registers: [registry],
    // Every rule's series exists (at 0 until its first failure), so alerts on it see the rule.
    async collect() {
      const { rules } = await current();
      for (const rule of rules) this.inc({ rule: rule.id, destination: rule.destination }, 0);
    },
  });
  return {
    replicated: (rule, outcome) =>
      changes.inc({ rule: rule.id, destination: rule.destination, outcome }),
    failed: (rule) => failures.inc({ rule: rule.id, destination: rule.destination }),
  };
};

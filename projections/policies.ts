import type { Position, Projection, RecordedEvent, RetentionRule } from '../domain';

/** A retention rule and where it was added (and removed). Partition `retention`, id = rule id. */
export type RetentionRuleDoc = RetentionRule & {
  readonly addedPosition: Position;
  readonly removedPosition?: Position;
};

/** A namespace's quota. Partition `quota`, id = namespace. */
export type QuotaDoc = { readonly bytes: number; readonly position: Position; readonly at: string };

export const policyPartitions = { retention: 'retention', quota: 'quota' } as const;

/**
 * Storage policies set on the log: retention rules (kept after removal, as replication rules
 * are, so a GC event's rule can always be looked up) and namespace quotas.
 */
export const policiesProjection: Projection<RetentionRuleDoc | QuotaDoc> = {
  name: 'policies',
  version: 1,
  eventTypes: ['RetentionRuleAdded', 'RetentionRuleRemoved', 'QuotaSet', 'QuotaRemoved'],
  keysOf: (event: RecordedEvent) => {
    switch (event.type) {
      case 'RetentionRuleAdded':
      case 'RetentionRuleRemoved':
        return [{ partition: policyPartitions.retention, id: event.data.id }];
      case 'QuotaSet':
      case 'QuotaRemoved':
        return [{ partition: policyPartitions.quota, id: event.data.namespace }];
      default:
        return [];
    }
  },
  evolve: (doc, event) => {
    switch (event.type) {
      case 'RetentionRuleAdded':
        return { ...event.data, addedPosition: event.position };
      case 'RetentionRuleRemoved':
        return doc === undefined ? undefined : { ...doc, removedPosition: event.position };
      case 'QuotaSet':
        return { bytes: event.data.bytes, position: event.position, at: event.metadata.at };
      case 'QuotaRemoved':
        return undefined;
      default:
        return doc;
    }
  },
};

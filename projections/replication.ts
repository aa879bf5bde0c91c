import type { DocKey, Position, Projection, RecordedEvent } from '../domain';
import { ruleStartPosition } from '../domain';

/** The last failure recorded for a rule. */
export type ReplicationFailureDoc = {
  readonly error: string;
  readonly attempt: number;
  readonly repo: string;
  readonly tag: string;
  readonly sourcePosition: Position;
  readonly at: string;
  /** Absent: the replicator gave up on that change and moved on. */
  readonly retryAt?: string;
};

/**
 * One rule and where its destination stands. Partition `rules`, id = rule id. Kept after the
 * rule is removed (with `removedPosition`), so its history stays readable.
 */
export type ReplicationRuleDoc = {
  readonly id: string;
  readonly name?: string;
  readonly repoPattern: string;
  readonly tagPattern: string;
  readonly destination: string;
  readonly backfill: boolean;
  readonly addedPosition: Position;
  readonly addedAt: string;
  readonly removedPosition?: Position;
  readonly removedAt?: string;
  /**
   * The source position up to which every matching change is settled — replicated
   * (`ReplicationSucceeded`) or given up on (`ReplicationFailed` without `retryAt`). The
   * replicator writes those in source order, so this is where a restart resumes. Starts at
   * the rule's start position (0 for a backfilling rule).
   */
  readonly lastPosition: Position;
  /** The last change replicated. */
  readonly lastReplicated?: {
    readonly repo: string;
    readonly tag: string;
    readonly digest?: string;
    readonly sourcePosition: Position;
    readonly at: string;
  };
  /** `ReplicationSucceeded` events. */
  readonly replicated: number;
  /** Changes given up on. */
  readonly skipped: number;
  readonly failures: {
    /** Every `ReplicationFailed`. */
    readonly total: number;
    /** Failures since the last success. */
    readonly consecutive: number;
    readonly last?: ReplicationFailureDoc;
  };
};

export const replicationPartitions = { rules: 'rules' } as const;

const ruleKey = (id: string): DocKey => ({ partition: replicationPartitions.rules, id });

const keysOf = (event: RecordedEvent): DocKey[] => {
  switch (event.type) {
    case 'ReplicationRuleAdded':
    case 'ReplicationRuleRemoved':
      return [ruleKey(event.data.id)];
    case 'ReplicationSucceeded':
    case 'ReplicationFailed':
      return [ruleKey(event.data.ruleId)];
    default:
      return [];
  }
};

const evolve = (
  doc: ReplicationRuleDoc | undefined,
  event: RecordedEvent,
): ReplicationRuleDoc | undefined => {
  switch (event.type) {
    case 'ReplicationRuleAdded': {
      // Ids are unique: a second add of the same id (a retried write) changes nothing.
      if (doc !== undefined) return doc;
      const { id, name, repoPattern, tagPattern, destination } = event.data;
      const backfill = event.data.backfill ?? false;
      return {
        id,
        ...(name !== undefined && { name }),
        repoPattern,
        tagPattern,
        destination,
        backfill,
        addedPosition: event.position,
        addedAt: event.metadata.at,
        lastPosition: ruleStartPosition(backfill, event.position),
        replicated: 0,
        skipped: 0,
        failures: { total: 0, consecutive: 0 },
      };
    }
    case 'ReplicationRuleRemoved':
      if (doc === undefined || doc.removedPosition !== undefined) return doc;
      return { ...doc, removedPosition: event.position, removedAt: event.metadata.at };
    case 'ReplicationSucceeded': {
      if (doc === undefined) return doc;
      const { repo, tag, digest, sourcePosition } = event.data;
      return {
        ...doc,
        lastPosition: Math.max(doc.lastPosition, sourcePosition),
        lastReplicated: {
          repo,
          tag,
          ...(digest !== undefined && { digest }),
          sourcePosition,
          at: event.metadata.at,
        },
        replicated: doc.replicated + 1,
        failures: { ...doc.failures, consecutive: 0 },
      };
    }
    case 'ReplicationFailed': {
      if (doc === undefined) return doc;
      const { repo, tag, sourcePosition, attempt, error, retryAt } = event.data;
      const final = retryAt === undefined;
      return {
        ...doc,
        ...(final && {
          lastPosition: Math.max(doc.lastPosition, sourcePosition),
          skipped: doc.skipped + 1,
        }),
        failures: {
          total: doc.failures.total + 1,
          consecutive: doc.failures.consecutive + 1,
          last: {
            error,
            attempt,
            repo,
            tag,
            sourcePosition,
            at: event.metadata.at,
            ...(retryAt !== undefined && { retryAt }),
          },
        },
      };
    }
    default:
      return doc;
  }
};

/** Replication rules and, per rule (one destination each), how far replication got. */
export const replicationProjection: Projection<ReplicationRuleDoc> = {
  name: 'replication',
  version: 1,
  eventTypes: [
    'ReplicationRuleAdded',
    'ReplicationRuleRemoved',
    'ReplicationSucceeded',
    'ReplicationFailed',
  ],
  keysOf,
  evolve,
};

export const isActiveRule = (doc: ReplicationRuleDoc): boolean => doc.removedPosition === undefined;

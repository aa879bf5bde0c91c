import type { Position, RuleInput } from '../../../domain';
import type { ReplicationRuleDoc } from '../../../projections';
import type { Attribution } from '../../shared/events';

export type ReadOptions = {
  /** The read reflects at least this log position (read-your-writes). */
  readonly minPosition?: Position;
};

/** How far the copy of one blob has come. */
export type CopyProgress = {
  readonly digest: string;
  readonly sent: number;
  readonly size: number;
};

/** One tag change in flight. */
export type InFlightChange = {
  readonly position: Position;
  readonly repo: string;
  readonly tag: string;
  readonly attempt: number;
  readonly error?: string;
  readonly retryAt?: string;
  readonly copying?: CopyProgress;
};

/** A rule as the rules API answers it: the projection's document. */
export type RuleView = ReplicationRuleDoc;

/** Where one rule's destination stands: the rule as the projection has it, and its progress. */
export type RuleStatus = Pick<
  ReplicationRuleDoc,
  'id' | 'name' | 'repoPattern' | 'tagPattern' | 'destination' | 'backfill'
> & {
  readonly state:
    | 'caught-up'
    | 'replicating'
    | 'retrying'
    | 'standby'
    | 'not-running'
    | 'removed'
    /** Read from a data directory a replicator in another process is working on. */
    | 'elsewhere';
  /** Recorded position: every matching change up to here is replicated or given up. */
  readonly lastPosition: Position;
  /** The same, including what the running replicator did but has not recorded yet. */
  readonly settled: Position;
  /** The oldest matching change not settled, if any. */
  readonly pending?: { readonly position: Position; readonly at: string };
  readonly lag: { readonly positions: number; readonly seconds: number };
  readonly replicated: number;
  readonly skipped: number;
  readonly failures: ReplicationRuleDoc['failures'];
  readonly lastReplicated?: ReplicationRuleDoc['lastReplicated'];
  /** Changes the running replicator is working on. */
  readonly inFlight?: readonly InFlightChange[];
};

export type ReplicationStatus = {
  /** The source log's head when the status was taken. */
  readonly head: Position;
  readonly at: string;
  /**
   * This process's replicator: `active`, `standby` (another holds the lease), or none; the CLI
   * on a data directory says `elsewhere` when another process's replicator holds its lease.
   */
  readonly replicator: 'active' | 'standby' | 'stopped' | 'not-running' | 'elsewhere';
  readonly rules: readonly RuleStatus[];
};

/**
 * Replication rules and status. Implemented over the log and the `replication` projection
 * (`createReplicationService`) and over HTTP (`createReplicationClient`): build-index's API
 * when the replicator is mounted there, or `shoal replicator`'s own.
 */
export interface ReplicationApi {
  /**
   * Appends `ReplicationRuleAdded`; `PARAMETER_INVALID` for a bad pattern, URL or name,
   * `DENIED` for a destination not allowed. `by`: whom the event records (the API's caller).
   */
  addRule(
    input: RuleInput,
    options?: { by?: Attribution },
  ): Promise<{ rule: RuleView; position: Position }>;
  /** Appends `ReplicationRuleRemoved`; by id, or by the name of an active rule. */
  removeRule(
    idOrName: string,
    options?: { by?: Attribution },
  ): Promise<{ id: string; position: Position }>;
  /** Active rules (all, removed included, with `all`), by id. */
  listRules(options?: ReadOptions & { all?: boolean }): Promise<RuleView[]>;
  status(options?: ReadOptions): Promise<ReplicationStatus>;
}

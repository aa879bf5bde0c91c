import { randomBytes } from 'node:crypto';
import type { Clock, EventLog, PendingChange, Position, ProjectionStore } from '../../domain';
import {
  ShoalError,
  destinationAllowed,
  orThrow,
  replicationLag,
  ruleIdFor,
  ruleSelects,
  truncate,
  validateRuleInput,
} from '../../domain';
import type { ReplicationRuleDoc } from '../../projections';
import { isActiveRule } from '../../projections';
import type { WriterContext } from '../shared/events';
import { attributedWriter, newEvent } from '../shared/events';
import type { ReplicationApi, RuleStatus, RuleView } from './client/replicationApi';
import { readRules } from './readRules';
import type { Replicator } from './replicator';

type ScanMemo = { from: Position; to: Position; found?: PendingChange };

/**
 * Rules and status over the log and the `replication` projection. Rules are events; status
 * combines the projection (what was recorded), the running replicator when there is one in
 * this process (what it is doing), and the log (the oldest matching change after the
 * settled position, for lag).
 */
export const createReplicationService = (deps: {
  log: EventLog;
  store: ProjectionStore;
  writer: WriterContext;
  clock: Clock;
  /** Resolves once the replication projection has applied `position`. */
  waitFor: (position: Position) => Promise<void>;
  replicator?: Replicator;
  /** Most events read past a rule's settled position to find its oldest pending change. */
  scanLimit?: number;
  /**
   * Globs of the destinations rules may name (`replication.allowedDestinations`); a rule to
   * another is refused with `DENIED`. Undefined: not checked here (the replicator checks).
   */
  allowedDestinations?: readonly string[];
}): ReplicationApi => {
  const { log, store, writer, waitFor } = deps;
  const scanLimit = deps.scanLimit ?? 100_000;
  const scans = new Map<string, ScanMemo>();

  const ready = async (minPosition?: Position) => {
    if (minPosition !== undefined && minPosition > 0) await waitFor(minPosition);
  };

  const find = async (idOrName: string): Promise<ReplicationRuleDoc> => {
    const rules = await readRules(store);
    const byId = rules.find((r) => r.id === idOrName);
    if (byId !== undefined) return byId;
    const byName = rules.filter((r) => isActiveRule(r) && r.name === idOrName);
    if (byName.length === 1) return byName[0] as ReplicationRuleDoc;
    throw new ShoalError('NAME_UNKNOWN', `no replication rule "${truncate(idOrName)}"`, {
      detail: { rule: truncate(idOrName) },
    });
  };

  /**
   * The first change after `from` that the rule must replicate, reading at most `scanLimit`
   * events; when the limit is reached without an answer, the first event read stands in
   * (lag is over-, never under-stated).
   */
  const firstPendingAfter = async (
    rule: ReplicationRuleDoc,
    from: Position,
    head: Position,
  ): Promise<PendingChange | undefined> => {
    if (from > head) return undefined;
    const memo = scans.get(rule.id);
    let start = from;
    if (memo !== undefined && memo.from === from) {
      if (memo.found !== undefined) return memo.found;
      start = memo.to + 1;
    }
    let read = 0;
    let firstRead: PendingChange | undefined;
    let position = start - 1;
    while (position < head && read < scanLimit) {
      const page = await log.readBatch(position + 1, { limit: Math.min(2000, scanLimit - read) });
      if (page.length === 0) {
        // Nothing more to read: the head moved back (a gap at the end of the log).
        position = head;
        break;
      }
      for (const event of page) {
        if (event.position > head) break;
        read += 1;
        position = event.position;
        firstRead ??= { position: event.position, at: event.metadata.at };
        if (
          (event.type === 'TagPushed' || event.type === 'TagDeleted') &&
          ruleSelects(rule, rule.addedPosition, {
            kind: event.type === 'TagPushed' ? 'pushed' : 'deleted',
            repo: event.data.repo,
            tag: event.data.tag,
            position: event.position,
          })
        ) {
          const found = { position: event.position, at: event.metadata.at };
          scans.set(rule.id, { from, to: position, found });
          return found;
        }
      }
    }
    if (position < head) return firstRead ?? { position: from, at: new Date(0).toISOString() };
    scans.set(rule.id, { from, to: position });
    return undefined;
  };

  const statusOf = async (
    rule: ReplicationRuleDoc,
    head: Position,
    now: number,
  ): Promise<RuleStatus> => {
    const base = {
      id: rule.id,
      ...(rule.name !== undefined && { name: rule.name }),
      repoPattern: rule.repoPattern,
      tagPattern: rule.tagPattern,
      destination: rule.destination,
      backfill: rule.backfill,
      lastPosition: rule.lastPosition,
      replicated: rule.replicated,
      skipped: rule.skipped,
      failures: rule.failures,
      ...(rule.lastReplicated !== undefined && { lastReplicated: rule.lastReplicated }),
    };
    if (!isActiveRule(rule)) {
      return {
        ...base,
        state: 'removed',
        settled: rule.lastPosition,
        lag: { positions: 0, seconds: 0 },
      };
    }
    const activity = deps.replicator?.activity(rule.id);
    const settled = Math.max(rule.lastPosition, activity?.settled ?? 0);
    const pending = activity?.firstPending ?? (await firstPendingAfter(rule, settled + 1, head));
    const lag = replicationLag({
      head,
      now,
      ...(pending !== undefined && { firstPending: pending }),
    });
    const role = deps.replicator?.role();
    const state: RuleStatus['state'] =
      role === undefined || role === 'stopped'
        ? 'not-running'
        : role === 'standby'
          ? 'standby'
          : activity?.state === 'retrying'
            ? 'retrying'
            : pending === undefined
              ? 'caught-up'
              : 'replicating';
    return {
      ...base,
      state,
      settled,
      ...(pending !== undefined && { pending }),
      lag,
      ...(activity !== undefined && { inFlight: activity.inFlight }),
    };
  };

  return {
    async addRule(input, options = {}) {
      const valid = orThrow(validateRuleInput(input));
      const allowlist = deps.allowedDestinations;
      if (allowlist !== undefined && !destinationAllowed(allowlist, valid.destination)) {
        throw new ShoalError(
          'DENIED',
          `destination ${valid.destination} is not in replication.allowedDestinations`,
          { detail: { destination: valid.destination } },
        );
      }
      const rules = await readRules(store);
      if (valid.name !== undefined && rules.some((r) => isActiveRule(r) && r.name === valid.name)) {
        throw new ShoalError('PARAMETER_INVALID', `a rule named "${valid.name}" exists already`, {
          detail: { name: valid.name },
        });
      }
      const id = ruleIdFor(valid.name, randomBytes(3).toString('hex'));
      const position = await log.append(
        [newEvent(attributedWriter(writer, options.by), 'ReplicationRuleAdded', { id, ...valid })],
        { expectedVersion: 'no-stream' },
      );
      await waitFor(position);
      return { rule: await find(id), position };
    },

    async removeRule(idOrName, options = {}) {
      const rule = await find(idOrName);
      if (!isActiveRule(rule)) {
        throw new ShoalError('NAME_UNKNOWN', `replication rule ${rule.id} was removed already`, {
          detail: { rule: rule.id },
        });
      }
      const position = await log.append([
        newEvent(attributedWriter(writer, options.by), 'ReplicationRuleRemoved', { id: rule.id }),
      ]);
      await waitFor(position);
      return { id: rule.id, position };
    },

    async listRules(options) {
      await ready(options?.minPosition);
      const rules = await readRules(store);
      return (options?.all ? rules : rules.filter(isActiveRule)) as RuleView[];
    },

    async status(options) {
      await ready(options?.minPosition);
      const head = await log.head();
      const now = deps.clock.now();
      const rules = await readRules(store);
      const role = deps.replicator?.role();
      return {
        head,
        at: new Date(now).toISOString(),
        replicator: role ?? 'not-running',
        rules: await Promise.all(
          rules.filter(isActiveRule).map((rule) => statusOf(rule, head, now)),
        ),
      };
    },
  };
};

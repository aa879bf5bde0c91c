import type { Subscription } from 'rxjs';
import type {
  Clock,
  Lease,
  EventLog,
  PendingChange,
  Position,
  ProjectionStore,
  ShoalEvent,
} from '../../domain';
import { backoffDelay } from '../../domain';
import type { ReplicationRuleDoc } from '../../projections';
import { isActiveRule, replicationProjection } from '../../projections';
import type { RegistryClient } from '../../adapters/registry/registryClient';
import type { Logger } from '../shared/logger';
import type { InFlightChange } from './client/replicationApi';
import type { ReplicationConfig } from './config';
import type { MountHints, SourceBlobs } from './copier';
import { createMountHints } from './copier';
import type { RuleWorker } from './ruleWorker';
import { startRuleWorker } from './ruleWorker';
import { readRules } from './readRules';
import type { Watermark } from './waits';
import { createWatermark, sleep, unlessAborted } from './waits';

/** The projections this process keeps (build-index's runner, or the replicator's own): where tags and rules are read. */
export type ProjectionsView = {
  waitFor(position: Position, timeoutMs: number, name?: string): Promise<void>;
  position(name?: string): Position;
};

export type ReplicatorDeps = {
  readonly log: EventLog;
  readonly store: ProjectionStore;
  readonly projections: ProjectionsView;
  readonly config: ReplicationConfig;
  /** This cluster's name, stamped on the events the replicator writes. */
  readonly cluster: string;
  readonly logger: Logger;
  readonly clock: Clock;
  /** Jitter source, [0, 1). */
  readonly random?: () => number;
  readonly source: SourceBlobs;
  /** A client per destination registry URL (the composition root adds credentials). */
  readonly destination: (url: string) => RegistryClient;
  /** Held while replicating; without one, this replicator is always active. */
  readonly lease?: Lease;
  readonly metrics?: ReplicatorMetrics;
};

export type ReplicatorMetrics = {
  replicated(rule: ReplicationRuleDoc, kind: 'written' | 'unchanged' | 'deleted'): void;
  failed(rule: ReplicationRuleDoc): void;
};

/** What a rule's worker is doing, for status and metrics. */
export type RuleActivity = {
  readonly state: 'replicating' | 'caught-up' | 'retrying';
  /** Every matching change up to this position is settled (replicated or given up). */
  readonly settled: Position;
  /** The last log position the worker read. */
  readonly read: Position;
  /** The oldest matching change not yet settled, among those read. */
  readonly firstPending?: PendingChange;
  readonly inFlight: readonly InFlightChange[];
};

export type Replicator = {
  start(): void;
  stop(): Promise<void>;
  /** `active`: holds the lease and replicates; `standby`: another process does. */
  role(): 'active' | 'standby' | 'stopped';
  activity(ruleId: string): RuleActivity | undefined;
};

/**
 * The replicator: for every active rule, a worker follows the log from the rule's recorded
 * position and makes each matching tag change happen at the destination.
 *
 * - **Order and coalescing.** A change is replicated by making the destination's tag equal to
 *   the source's *current* value of that tag (read from the build-index projection once it has
 *   reached the log's head): a tag moved five times while the destination was down is written
 *   once, with its latest digest, and a late or repeated change can never write an older
 *   value. Changes of one tag are handled one at a time, in log order; different tags
 *   proceed in parallel (`concurrency`).
 * - **Referrers** (signatures, SBOMs: manifests with a `subject`) go with the tag that names
 *   their subject, after it; one pushed later is a change of its own, copied once every change
 *   admitted before it is settled, when the destination has its subject (`referrers.ts`).
 * - **Durable position.** Outcomes (`ReplicationSucceeded`, or `ReplicationFailed` without
 *   `retryAt` for a change given up on) are appended strictly in source order, so the
 *   `replication` projection's `lastPosition` is always a point before which everything is
 *   settled: a restart resumes there and skips nothing.
 * - **Idempotency.** Outcome events have ids derived from (rule, destination, source
 *   position): a change replicated twice — after a crash, or by a second replicator — is
 *   recorded once. The copy itself checks before it writes (existing blobs, the tag's
 *   current digest), so a repeat moves no bytes.
 * - **Failures** retry with exponential backoff and jitter, forever unless `maxAttempts` is
 *   set; each is recorded as `ReplicationFailed` with `retryAt`. Rules run independently:
 *   a destination that is down holds back only the rules that point at it.
 */
export const createReplicator = (deps: ReplicatorDeps): Replicator => {
  const { log, store, projections, config, logger } = deps;
  const random = deps.random ?? Math.random;
  const projectionTimeoutMs = config.timeoutMs;

  let role: 'active' | 'standby' | 'stopped' = 'stopped';
  let running = false;
  let abort = new AbortController();
  let mainLoop: Promise<void> | undefined;
  const workers = new Map<string, RuleWorker>();
  const hints = new Map<string, MountHints>();
  const hintsFor = (destination: string) => {
    let h = hints.get(destination);
    if (h === undefined) hints.set(destination, (h = createMountHints()));
    return h;
  };

  /** Appends with retries: the log may be briefly unavailable; outcomes must not be lost. */
  const appendDurably = async (events: ShoalEvent[], signal: AbortSignal) => {
    for (let attempt = 1; ; attempt++) {
      try {
        await log.append(events);
        return;
      } catch (error) {
        if (signal.aborted) throw error;
        const delay = backoffDelay(attempt, config.backoff, random());
        logger.warn(
          { err: error, retryInMs: delay },
          'cannot record replication outcome; retrying',
        );
        await sleep(delay, signal);
      }
    }
  };

  /** Starts workers for new rules and stops those of removed ones. */
  const reconcile = async (head: Watermark) => {
    const rules = await readRules(store);
    const active = new Map(rules.filter(isActiveRule).map((r) => [r.id, r]));
    for (const [id, worker] of workers) {
      if (!active.has(id)) {
        workers.delete(id);
        logger.info({ rule: id }, 'rule removed: replication stopped');
        await worker.stop();
      }
    }
    for (const [id, rule] of active) {
      if (workers.has(id)) continue;
      const worker = startRuleWorker(
        { deps, random, appendDurably, mountHints: hintsFor(rule.destination) },
        rule,
        head,
      );
      workers.set(id, worker);
      worker.done.catch(() => {
        // A worker that failed (the log went away) is restarted on the next reconcile.
        if (workers.get(id) !== worker) return;
        workers.delete(id);
        void worker.stop();
      });
    }
  };

  const stopWorkers = async () => {
    const all = [...workers.values()];
    workers.clear();
    await Promise.all(all.map((w) => w.stop()));
  };

  /** Replicates while holding the lease; returns when it is lost, on stop, or on failure. */
  const runActive = async (signal: AbortSignal) => {
    const start = await log.head();
    await unlessAborted(
      projections.waitFor(start, projectionTimeoutMs, replicationProjection.name),
      signal,
    );
    const head = createWatermark(start);
    let failure: unknown;
    let wake: () => void = () => undefined;
    const woken = new Promise<void>((resolve) => (wake = resolve));
    let reconciling: Promise<void> = Promise.resolve();
    const scheduleReconcile = (position: Position) => {
      reconciling = reconciling
        .then(async () => {
          await unlessAborted(
            projections.waitFor(position, projectionTimeoutMs, replicationProjection.name),
            signal,
          );
          await reconcile(head);
        })
        .catch((error: unknown) => {
          if (signal.aborted) return;
          failure ??= error;
          wake();
        });
    };
    scheduleReconcile(start);
    const subscription: Subscription = log.subscribe(start + 1).subscribe({
      next: (event) => {
        head.raise(event.position);
        if (event.type === 'ReplicationRuleAdded' || event.type === 'ReplicationRuleRemoved') {
          scheduleReconcile(event.position);
        }
      },
      error: (error: unknown) => {
        failure ??= error;
        wake();
      },
      complete: () => wake(),
    });
    const renewEvery = Math.max(250, Math.floor(config.lock.leaseMs / 3));
    const renewal = setInterval(() => {
      if (deps.lease === undefined) {
        // Restart workers that died (their rule stays active): cheap when none did.
        scheduleReconcile(head.get());
        return;
      }
      void deps.lease
        .renew()
        .then((held) => {
          if (!held) {
            logger.warn('replicator lease lost to another process: standing by');
            wake();
          } else scheduleReconcile(head.get());
        })
        .catch((error: unknown) => logger.warn({ err: error }, 'cannot renew the lease'));
    }, renewEvery);
    const onAbort = () => wake();
    signal.addEventListener('abort', onAbort, { once: true });
    try {
      await woken;
    } finally {
      signal.removeEventListener('abort', onAbort);
      clearInterval(renewal);
      subscription.unsubscribe();
      await reconciling.catch(() => undefined);
      await stopWorkers();
    }
    if (failure !== undefined && !signal.aborted) throw failure;
  };

  const loop = async (signal: AbortSignal) => {
    let failures = 0;
    while (running) {
      try {
        if (deps.lease !== undefined && !(await deps.lease.tryAcquire())) {
          if (role !== 'standby') {
            const holder = await deps.lease.holder();
            logger.info({ holder }, 'another replicator holds the lease: standing by');
          }
          role = 'standby';
          await sleep(Math.max(250, Math.floor(config.lock.leaseMs / 3)), signal);
          continue;
        }
        role = 'active';
        logger.info('replicator active');
        await runActive(signal);
        failures = 0;
      } catch (error) {
        if (!running) break;
        failures += 1;
        const delay = backoffDelay(failures, config.backoff, random());
        logger.error({ err: error, retryInMs: delay }, 'replicator failed; restarting');
        await sleep(delay, signal);
      }
    }
  };

  return {
    start() {
      if (running) return;
      running = true;
      abort = new AbortController();
      mainLoop = loop(abort.signal);
    },
    async stop() {
      if (!running) return;
      running = false;
      abort.abort();
      await mainLoop;
      await deps.lease?.release().catch(() => undefined);
      role = 'stopped';
    },
    role: () => role,
    activity: (ruleId) => workers.get(ruleId)?.activity(),
  };
};

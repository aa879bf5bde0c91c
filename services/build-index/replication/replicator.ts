import type { Subscription } from 'rxjs';
import type {
  Clock,
  Digest,
  EventLog,
  PendingChange,
  Position,
  ProjectionStore,
  RecordedEvent,
  ShoalEvent,
} from '../../../domain';
import { backoffDelay, givesUp, ruleSelects } from '../../../domain';
import type { ReplicationRuleDoc, TagDoc } from '../../../projections';
import {
  buildIndexProjection,
  isActiveRule,
  replicationPartitions,
  replicationProjection,
} from '../../../projections';
import type { Logger } from '../../shared/logger';
import type { ReplicationConfig } from './config';
import type { CopyContext, CopyProgress, MountHints, SourceBlobs } from './copier';
import { createMountHints, deleteTag, replicateTag } from './copier';
import type { FileLease } from './lock';
import type { RegistryClient } from './registryClient';
import { failedEvent, succeededEvent } from './replicationEvents';

/** The projections this process keeps (build-index's runner): where tags and rules are read. */
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
  readonly lease?: FileLease;
  readonly metrics?: ReplicatorMetrics;
};

export type ReplicatorMetrics = {
  replicated(rule: ReplicationRuleDoc, kind: 'written' | 'unchanged' | 'deleted'): void;
  failed(rule: ReplicationRuleDoc): void;
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

type Outcome =
  | { readonly kind: 'succeeded'; readonly digest?: string }
  /** Nothing to record (a backfilling rule meets a tag that no longer exists). */
  | { readonly kind: 'none' }
  | { readonly kind: 'gave-up'; readonly error: string; readonly attempt: number };

type Item = {
  readonly event: RecordedEvent<'TagPushed' | 'TagDeleted'>;
  readonly repo: string;
  readonly tag: string;
  attempt: number;
  error?: string;
  retryAt?: string;
  copying?: CopyProgress;
  outcome?: Outcome;
};

const isTagChange = (event: RecordedEvent): event is RecordedEvent<'TagPushed' | 'TagDeleted'> =>
  event.type === 'TagPushed' || event.type === 'TagDeleted';

const messageOf = (error: unknown): string =>
  (error instanceof Error ? error.message : String(error)).slice(0, 4000);

/** A promise that `sleep` resolves after `ms`, or at once when `signal` aborts. */
const sleep = (ms: number, signal: AbortSignal) =>
  new Promise<void>((resolve) => {
    if (signal.aborted) return resolve();
    const timer = setTimeout(done, ms);
    function done() {
      clearTimeout(timer);
      signal.removeEventListener('abort', done);
      resolve();
    }
    signal.addEventListener('abort', done, { once: true });
  });

/** `promise`, or a rejection as soon as `signal` aborts (for waits that must not hold a stop). */
const unlessAborted = <T>(promise: Promise<T>, signal: AbortSignal): Promise<T> =>
  new Promise<T>((resolve, reject) => {
    if (signal.aborted) return reject(new Error('stopped'));
    const onAbort = () => reject(new Error('stopped'));
    signal.addEventListener('abort', onAbort, { once: true });
    promise.then(
      (value) => {
        signal.removeEventListener('abort', onAbort);
        resolve(value);
      },
      (error: unknown) => {
        signal.removeEventListener('abort', onAbort);
        reject(error);
      },
    );
  });

/** A value that only grows, and waiters for it to pass a mark. */
const createWatermark = (initial: Position) => {
  let value = initial;
  const waiters = new Set<{ mark: Position; resolve: () => void }>();
  return {
    get: () => value,
    raise(to: Position) {
      if (to <= value) return;
      value = to;
      for (const waiter of [...waiters]) {
        if (value > waiter.mark) {
          waiters.delete(waiter);
          waiter.resolve();
        }
      }
    },
    /** Resolves when the value passes `mark`, or `signal` aborts. */
    above(mark: Position, signal: AbortSignal): Promise<void> {
      if (value > mark || signal.aborted) return Promise.resolve();
      return new Promise((resolve) => {
        const waiter = {
          mark,
          resolve: () => {
            signal.removeEventListener('abort', waiter.resolve);
            waiters.delete(waiter);
            resolve();
          },
        };
        waiters.add(waiter);
        signal.addEventListener('abort', waiter.resolve, { once: true });
      });
    },
  };
};

type Watermark = ReturnType<typeof createWatermark>;

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
  const writer = { clock: deps.clock, cluster: deps.cluster };
  const projectionTimeoutMs = config.timeoutMs;

  let role: 'active' | 'standby' | 'stopped' = 'stopped';
  let running = false;
  let abort = new AbortController();
  let mainLoop: Promise<void> | undefined;
  const workers = new Map<string, Worker>();
  const hints = new Map<string, MountHints>();
  const hintsFor = (destination: string) => {
    let h = hints.get(destination);
    if (h === undefined) hints.set(destination, (h = createMountHints()));
    return h;
  };

  type Worker = {
    readonly rule: ReplicationRuleDoc;
    readonly activity: () => RuleActivity;
    readonly stop: () => Promise<void>;
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

  const startWorker = (rule: ReplicationRuleDoc, head: Watermark): Worker => {
    const controller = new AbortController();
    const signal = controller.signal;
    const wlog = logger.child({ rule: rule.id, destination: rule.destination });
    const destination = deps.destination(rule.destination);
    const queue: Item[] = [];
    const queueChanged = createWatermark(0);
    let changes = 0;
    const tagTails = new Map<string, Promise<void>>();
    /** Per tag: the destination equals the source as of this build-index position. */
    const synced = new Map<string, { position: Position; digest?: string }>();
    let cursor = rule.lastPosition;
    let flushing: Promise<void> = Promise.resolve();
    let stopped = false;

    const copyContext = (item: Item): CopyContext => ({
      source: deps.source,
      destination,
      chunkSize: config.chunkSizeBytes,
      blobConcurrency: config.blobConcurrency,
      mountHints: hintsFor(rule.destination),
      onProgress: (progress) => {
        item.copying = progress;
      },
      signal,
    });

    const backfilling = (item: Item) => item.event.position < rule.addedPosition;

    /** Makes the destination's tag what the source's is now. */
    const sync = async (item: Item): Promise<Outcome> => {
      const key = `${item.repo}:${item.tag}`;
      const known = synced.get(key);
      if (known !== undefined && known.position >= item.event.position) {
        // A later value of this tag is at the destination already (coalesced).
        return backfilling(item)
          ? { kind: 'none' }
          : { kind: 'succeeded', ...(known.digest !== undefined && { digest: known.digest }) };
      }
      // Read the tag as of at least the head: never older than any change seen so far,
      // including those another replicator may have written already.
      const headNow = await log.head();
      await unlessAborted(
        projections.waitFor(headNow, projectionTimeoutMs, buildIndexProjection.name),
        signal,
      );
      const asOf = projections.position(buildIndexProjection.name);
      const current = await store.get<TagDoc>(buildIndexProjection.name, {
        partition: item.repo,
        id: item.tag,
      });
      item.copying = undefined;
      if (current !== undefined) {
        const digest = current.digest as Digest;
        const result = await replicateTag(copyContext(item), item.repo, item.tag, digest);
        synced.set(key, { position: asOf, digest });
        deps.metrics?.replicated(rule, result);
        if (result === 'written') {
          wlog.debug({ repo: item.repo, tag: item.tag, digest }, 'tag replicated');
        }
        return { kind: 'succeeded', digest };
      }
      if (backfilling(item)) {
        synced.set(key, { position: asOf });
        return { kind: 'none' };
      }
      const deleted = await deleteTag(copyContext(item), item.repo, item.tag);
      synced.set(key, { position: asOf });
      if (deleted.kind === 'unsupported') {
        wlog.warn({ repo: item.repo, tag: item.tag, reason: deleted.reason }, 'tag not deleted');
        return { kind: 'gave-up', error: deleted.reason, attempt: item.attempt + 1 };
      }
      deps.metrics?.replicated(rule, 'deleted');
      return { kind: 'succeeded' };
    };

    const outcomeEvent = (item: Item): ShoalEvent | undefined => {
      const outcome = item.outcome;
      const common = {
        ruleId: rule.id,
        repo: item.repo,
        tag: item.tag,
        destination: rule.destination,
        sourcePosition: item.event.position,
      };
      if (outcome === undefined || outcome.kind === 'none') return undefined;
      if (outcome.kind === 'succeeded') {
        return succeededEvent(
          writer,
          { ...common, ...(outcome.digest !== undefined && { digest: outcome.digest }) },
          item.event.id,
        );
      }
      return failedEvent(
        writer,
        { ...common, attempt: outcome.attempt, error: outcome.error.slice(0, 4000) },
        item.event.id,
      );
    };

    /** Records the settled changes at the front of the queue, in order, in one append. */
    const flush = () => {
      flushing = flushing.then(async () => {
        let n = 0;
        while (n < queue.length && (queue[n] as Item).outcome !== undefined) n++;
        if (n === 0) return;
        const done = queue.slice(0, n);
        const events = done.map(outcomeEvent).filter((e): e is ShoalEvent => e !== undefined);
        if (events.length > 0) await appendDurably(events, signal);
        queue.splice(0, n);
        queueChanged.raise(++changes);
      });
      flushing = flushing.catch((error: unknown) => {
        if (!signal.aborted) wlog.error({ err: error }, 'cannot record outcomes');
      });
    };

    const work = async (item: Item) => {
      for (;;) {
        if (stopped) return;
        try {
          item.outcome = await sync(item);
          item.error = undefined;
          item.retryAt = undefined;
          flush();
          return;
        } catch (error) {
          if (stopped) return;
          item.attempt += 1;
          const message = messageOf(error);
          deps.metrics?.failed(rule);
          if (givesUp(item.attempt, config.maxAttempts)) {
            wlog.warn(
              { repo: item.repo, tag: item.tag, attempt: item.attempt, err: error },
              'replication given up after the last attempt',
            );
            item.outcome = { kind: 'gave-up', error: message, attempt: item.attempt };
            flush();
            return;
          }
          const delay = backoffDelay(item.attempt, config.backoff, random());
          const retryAt = new Date(deps.clock.now() + delay).toISOString();
          item.error = message;
          item.retryAt = retryAt;
          wlog.warn(
            { repo: item.repo, tag: item.tag, attempt: item.attempt, retryAt, error: message },
            'replication failed; will retry',
          );
          await log
            .append([
              failedEvent(
                writer,
                {
                  ruleId: rule.id,
                  repo: item.repo,
                  tag: item.tag,
                  destination: rule.destination,
                  sourcePosition: item.event.position,
                  attempt: item.attempt,
                  error: message,
                  retryAt,
                },
                item.event.id,
              ),
            ])
            .catch((appendError: unknown) =>
              wlog.warn({ err: appendError }, 'cannot record a replication failure'),
            );
          await sleep(delay, signal);
        }
      }
    };

    const admit = async (event: RecordedEvent<'TagPushed' | 'TagDeleted'>) => {
      while (queue.length >= config.concurrency && !stopped) {
        await queueChanged.above(changes, signal);
      }
      if (stopped) return;
      const item: Item = { event, repo: event.data.repo, tag: event.data.tag, attempt: 0 };
      queue.push(item);
      const key = `${item.repo}:${item.tag}`;
      const run = (tagTails.get(key) ?? Promise.resolve()).then(() => work(item));
      tagTails.set(key, run);
      void run.finally(() => {
        if (tagTails.get(key) === run) tagTails.delete(key);
      });
    };

    const follow = async () => {
      wlog.info({ from: cursor }, 'replicating');
      while (!stopped) {
        const page = await log.readBatch(cursor + 1, { limit: 500 });
        if (page.length === 0) {
          await head.above(cursor, signal);
          continue;
        }
        for (const event of page) {
          if (stopped) return;
          if (
            isTagChange(event) &&
            ruleSelects(rule, rule.addedPosition, {
              kind: event.type === 'TagPushed' ? 'pushed' : 'deleted',
              repo: event.data.repo,
              tag: event.data.tag,
              position: event.position,
            })
          ) {
            await admit(event);
          }
          cursor = Math.max(cursor, event.position);
        }
        head.raise(cursor);
      }
    };

    const done = follow().catch((error: unknown) => {
      if (!stopped) wlog.error({ err: error }, 'replication worker failed');
      throw error;
    });

    const settled = (): Position =>
      queue.length === 0 ? cursor : (queue[0] as Item).event.position - 1;

    return {
      rule,
      activity: () => {
        const pending = queue.filter((item) => item.outcome === undefined);
        const first = queue[0];
        return {
          state: pending.some((i) => i.retryAt !== undefined)
            ? 'retrying'
            : queue.length > 0
              ? 'replicating'
              : 'caught-up',
          settled: settled(),
          read: cursor,
          ...(first !== undefined && {
            firstPending: { position: first.event.position, at: first.event.metadata.at },
          }),
          inFlight: pending.map((item) => ({
            position: item.event.position,
            repo: item.repo,
            tag: item.tag,
            attempt: item.attempt,
            ...(item.error !== undefined && { error: item.error }),
            ...(item.retryAt !== undefined && { retryAt: item.retryAt }),
            ...(item.copying !== undefined && { copying: { ...item.copying } }),
          })),
        };
      },
      stop: async () => {
        stopped = true;
        controller.abort();
        await done.catch(() => undefined);
        await Promise.allSettled([...tagTails.values()]);
        await flushing;
      },
      // Exposed for the manager's failure handling.
      ...{ done },
    } as Worker & { done: Promise<void> };
  };

  const loadRules = async (): Promise<ReplicationRuleDoc[]> => {
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

  /** Starts workers for new rules and stops those of removed ones. */
  const reconcile = async (head: Watermark) => {
    const rules = await loadRules();
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
      const worker = startWorker(rule, head);
      workers.set(id, worker);
      (worker as Worker & { done: Promise<void> }).done.catch(() => {
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

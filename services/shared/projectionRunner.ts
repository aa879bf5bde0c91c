import type { Observable, Subscription } from 'rxjs';
import { BehaviorSubject } from 'rxjs';
import type {
  DocChange,
  DocKey,
  EventLog,
  Position,
  Projection,
  ProjectionStore,
  RecordedEvent,
} from '../../domain';
import { ShoalError, docKeyString } from '../../domain';
import type { Logger } from './logger';
import { silentLogger } from './logger';

// Feeds pure projections from the log into a ProjectionStore. Three entry points share one
// engine (`createApplier`): the long-running runner that services start, `rebuildProjection`
// (reset and replay; `shoal replay`, version bumps) and `verifyProjection` (replay into
// scratch state and compare digests; `shoal replay --verify`).

/**
 * Events per log page when rebuilding. Large enough that round trips don't matter, small
 * enough that a page dies young: at 20,000 events a page (about 20 MB of objects) outlived
 * V8's young generation and was promoted, and GC cost more than the pages saved.
 */
export const defaultRebuildPageSize = 5_000;
/** A rebuild commits once this many documents changed since its last commit. */
export const defaultRebuildFlushDocs = 250_000;
/** Documents a rebuild keeps in memory so that it need not read back what it wrote. */
export const defaultRebuildCacheDocs = 500_000;

const conflicted = Symbol('conflicted');
/** Another writer moved a checkpoint under us (a second runner on the same store). */
type Conflict = typeof conflicted;

/**
 * One projection's state between the log and the store. It evolves documents in memory
 * batch by batch and writes them with `flush`: one `commit` from the checkpoint the store
 * had to the position applied, so nothing is applied twice or skipped.
 *
 * The cache holds documents as of `position`, for keys read or written since it was last
 * cleared (`undefined`: known to be absent). It is only trusted while our commits succeed:
 * a commit from checkpoint c succeeds only if nobody committed since c, so the store still
 * holds what we read or wrote. On any failure the applier is dropped, never reused.
 * `complete` means no document outside the cache exists (the projection was empty when the
 * applier started), which spares a rebuild every read.
 */
type Applier = {
  readonly projection: Projection;
  /** Position of the last event the store has applied (what `flush` commits from). */
  readonly checkpoint: () => Position;
  /** Position of the last event applied in memory. */
  readonly position: () => Position;
  /** Documents changed since the last flush. */
  readonly pending: () => number;
  readonly cached: () => number;
  apply(events: readonly RecordedEvent[]): Promise<void>;
  /** Commits; false when another writer moved the checkpoint (nothing was written). */
  flush(): Promise<boolean>;
};

/** A document as the applier knows it: `doc` undefined means absent. */
type Entry = { readonly key: DocKey; doc: unknown; dirty: boolean };

const createApplier = (
  store: ProjectionStore,
  projection: Projection,
  start: { checkpoint: Position; empty: boolean; cacheDocs: number },
): Applier => {
  const { name, version } = projection;
  const types = new Set<string>(projection.eventTypes);
  let checkpoint = start.checkpoint;
  let position = checkpoint;
  let complete = start.empty;
  // partition → id → entry. Two lookups on short strings beat one on a concatenated key:
  // this loop runs once per event, and at a million events that is most of a replay.
  const cache = new Map<string, Map<string, Entry>>();
  let cached = 0;
  const dirty: Entry[] = [];

  const entryOf = (key: DocKey, toLoad: Entry[]): Entry => {
    let partition = cache.get(key.partition);
    if (partition === undefined) {
      partition = new Map();
      cache.set(key.partition, partition);
    }
    let entry = partition.get(key.id);
    if (entry === undefined) {
      entry = { key, doc: undefined, dirty: false };
      partition.set(key.id, entry);
      cached += 1;
      if (!complete) toLoad.push(entry);
    }
    return entry;
  };

  const noLoads: Entry[] = [];

  const evolve = (entry: Entry, event: RecordedEvent) => {
    const after = projection.evolve(entry.doc, event, entry.key);
    if (after === entry.doc) return;
    entry.doc = after;
    if (!entry.dirty) {
      entry.dirty = true;
      dirty.push(entry);
    }
  };

  return {
    projection,
    checkpoint: () => checkpoint,
    position: () => position,
    pending: () => dirty.length,
    cached: () => cached,

    async apply(events) {
      const last = events[events.length - 1]?.position;
      if (last === undefined || last <= position) return;
      // Every document touched twice in the batch evolves twice, in log order.
      if (complete) {
        // Nothing to read from the store: evolve in one pass.
        for (const event of events) {
          if (event.position <= position || !types.has(event.type)) continue;
          for (const key of projection.keysOf(event)) evolve(entryOf(key, noLoads), event);
        }
        position = last;
        return;
      }
      // First the documents the batch needs, read in one getMany; then evolve step by step.
      const stepEvents: RecordedEvent[] = [];
      const stepEntries: Entry[] = [];
      const toLoad: Entry[] = [];
      for (const event of events) {
        if (event.position <= position || !types.has(event.type)) continue;
        for (const key of projection.keysOf(event)) {
          stepEvents.push(event);
          stepEntries.push(entryOf(key, toLoad));
        }
      }
      if (toLoad.length > 0) {
        const found = await store.getMany(
          name,
          toLoad.map((entry) => entry.key),
        );
        for (const entry of toLoad) entry.doc = found.get(docKeyString(entry.key));
      }
      for (let i = 0; i < stepEntries.length; i++) {
        evolve(stepEntries[i] as Entry, stepEvents[i] as RecordedEvent);
      }
      position = last;
    },

    async flush() {
      if (position === checkpoint && dirty.length === 0) return true;
      const changes: DocChange[] = dirty.map((entry) => ({ key: entry.key, doc: entry.doc }));
      const ok = await store.commit(name, { from: checkpoint, to: position, version, changes });
      if (!ok) return false;
      checkpoint = position;
      for (const entry of dirty) entry.dirty = false;
      dirty.length = 0;
      if (cached > start.cacheDocs) {
        cache.clear();
        cached = 0;
        complete = false;
      }
      return true;
    },
  };
};

type ReplayOptions = {
  readonly pageSize: number;
  /** Commit when this many documents changed (and always at the end). */
  readonly flushDocs: number;
  readonly cacheDocs: number;
  /** Apply events up to this position only. */
  readonly until?: Position;
  readonly signal?: AbortSignal;
};

/**
 * Replays the log after the applier's position into its store, in pages. Stops at the end of
 * the log, at `until`, or at a conflict (another writer moved the checkpoint; the applier is
 * then spent).
 */
const replay = async (
  log: EventLog,
  applier: Applier,
  options: ReplayOptions,
): Promise<{ events: number; conflict: boolean }> => {
  const until = options.until ?? Infinity;
  let events = 0;
  while (applier.position() < until) {
    options.signal?.throwIfAborted();
    let page = await log.readBatch(applier.position() + 1, { limit: options.pageSize });
    if (page.length === 0) break;
    const tail = page[page.length - 1] as RecordedEvent;
    if (tail.position > until) page = page.filter((event) => event.position <= until);
    if (page.length === 0) break;
    await applier.apply(page);
    events += page.length;
    if (applier.pending() >= options.flushDocs || applier.cached() > options.cacheDocs) {
      if (!(await applier.flush())) return { events, conflict: true };
    }
  }
  return { events, conflict: !(await applier.flush()) };
};

const changedUnderneath = (name: string) =>
  new ShoalError(
    'INTERNAL',
    `projection "${name}" was changed by another writer while it was being rebuilt; ` +
      'stop the other runner, or retry',
    { retriable: true, detail: { projection: name } },
  );

export type RebuildResult = {
  /** Events read from the log. */
  readonly events: number;
  /** The projection's checkpoint afterwards. */
  readonly position: Position;
  readonly ms: number;
};

/**
 * Drops a projection's state and replays the whole log into it, in large pages (`readBatch`,
 * not a subscription). It keeps the documents it wrote in memory (up to `cacheDocs`) so it
 * never reads them back, and commits once `flushDocs` documents changed and at the end: a
 * document rewritten many times during the replay is written a few times, not once per
 * event. Every commit is a consistent checkpoint; if the process dies, the runner resumes
 * from the last one. Readers see partial state while it runs.
 */
export const rebuildProjection = async (options: {
  log: EventLog;
  store: ProjectionStore;
  projection: Projection;
  logger?: Logger;
  pageSize?: number;
  flushDocs?: number;
  cacheDocs?: number;
  signal?: AbortSignal;
}): Promise<RebuildResult> => {
  const { log, store, projection } = options;
  const started = performance.now();
  await store.reset(projection.name);
  const cacheDocs = options.cacheDocs ?? defaultRebuildCacheDocs;
  const applier = createApplier(store, projection, { checkpoint: 0, empty: true, cacheDocs });
  const { events, conflict } = await replay(log, applier, {
    pageSize: options.pageSize ?? defaultRebuildPageSize,
    flushDocs: options.flushDocs ?? defaultRebuildFlushDocs,
    cacheDocs,
    ...(options.signal !== undefined && { signal: options.signal }),
  });
  if (conflict) throw changedUnderneath(projection.name);
  const result = { events, position: applier.checkpoint(), ms: performance.now() - started };
  options.logger?.info({ projection: projection.name, ...result }, 'projection rebuilt');
  return result;
};

export type VerifyResult = {
  /** Digest of the live state at `position`. */
  readonly live: string;
  /** Digest of a fresh replay up to the same position. */
  readonly rebuilt: string;
  readonly position: Position;
  readonly equal: boolean;
};

/**
 * Checks that the live state is what replaying the log gives: brings the live projection up
 * to the head of the log (when another runner is doing that, it lets it), takes the digest
 * of the live state and its checkpoint, replays into `scratch` up to exactly that position
 * and compares. The live state must have been built by this version of the projection.
 */
export const verifyProjection = async (options: {
  log: EventLog;
  store: ProjectionStore;
  projection: Projection;
  scratch: ProjectionStore;
  pageSize?: number;
}): Promise<VerifyResult> => {
  const { log, store, projection, scratch } = options;
  const { name } = projection;
  const pageSize = options.pageSize ?? defaultRebuildPageSize;
  const stored = await store.storedVersion(name);
  if (stored !== undefined && stored !== projection.version) {
    throw new ShoalError(
      'INTERNAL',
      `projection "${name}" was built by version ${stored} of its reducer and this is ` +
        `version ${projection.version}: rebuild it (shoal replay) before verifying it`,
      { detail: { projection: name, stored, version: projection.version } },
    );
  }

  const caughtUp = createApplier(store, projection, {
    checkpoint: await store.checkpoint(name),
    empty: stored === undefined,
    cacheDocs: 0,
  });
  // Commit every page. A conflict means a live runner is moving it along: as good.
  await replay(log, caughtUp, { pageSize, flushDocs: 0, cacheDocs: 0 });

  // The digest and the position it belongs to must match: read the checkpoint around it.
  let live: { digest: string; position: Position } | undefined;
  for (let attempt = 0; attempt < 10 && live === undefined; attempt++) {
    const before = await store.checkpoint(name);
    const digest = await store.digest(name);
    if ((await store.checkpoint(name)) === before) live = { digest, position: before };
  }
  if (live === undefined) {
    throw new ShoalError(
      'SERVICE_UNAVAILABLE',
      `projection "${name}" kept moving while its digest was taken; try again`,
      { detail: { projection: name } },
    );
  }

  await scratch.reset(name);
  const rebuilding = createApplier(scratch, projection, {
    checkpoint: 0,
    empty: true,
    cacheDocs: defaultRebuildCacheDocs,
  });
  const scratchReplay = await replay(log, rebuilding, {
    pageSize,
    flushDocs: defaultRebuildFlushDocs,
    cacheDocs: defaultRebuildCacheDocs,
    until: live.position,
  });
  if (scratchReplay.conflict) throw changedUnderneath(name);
  const rebuilt = await scratch.digest(name);
  return { live: live.digest, rebuilt, position: live.position, equal: live.digest === rebuilt };
};

export type ProjectionRunnerOptions = {
  readonly log: EventLog;
  readonly store: ProjectionStore;
  readonly projections: readonly Projection[];
  readonly logger?: Logger;
  /** Most events applied (and read per page while catching up) in one commit; default 5000. */
  readonly batchSize?: number;
  /** Documents per projection kept between batches to spare reads; default 10,000. */
  readonly cacheDocs?: number;
  /** Backoff after a failure: doubles from `minBackoffMs` (100) up to `maxBackoffMs` (10 s). */
  readonly minBackoffMs?: number;
  readonly maxBackoffMs?: number;
};

export type ProjectionRunner = {
  /** Starts following the log (idempotent). Failures are logged and retried with backoff. */
  start(): void;
  /** Stops after the batch in flight; pending `waitFor`s reject. */
  stop(): Promise<void>;
  /** The position every projection (or the one named) has committed. */
  position(name?: string): Position;
  /**
   * Resolves once every projection (or the one named) has committed `position`; rejects with
   * `POSITION_NOT_REACHED` after `timeoutMs`, or when the runner stops.
   */
  waitFor(position: Position, timeoutMs: number, name?: string): Promise<void>;
  /** Committed position per projection; emits the current value on subscribe. */
  readonly positions$: Observable<Readonly<Record<string, Position>>>;
  /**
   * Applies everything up to the log's current head and resolves with the position reached.
   * Without `start` (a CLI on a data directory) it does the work itself and throws on failure;
   * with the runner started it waits for it.
   */
  catchUp(): Promise<Position>;
};

type Waiter = { readonly reject: (error: Error) => void; readonly check: () => void };

/**
 * Keeps projections up to date with the log: on start, rebuilds any projection whose stored
 * state was built by another version of its reducer; then reads from the lowest checkpoint in
 * pages until near the head, and follows the log live. Events are applied in batches: what
 * has arrived, up to `batchSize`, without waiting for more (a single event is applied at
 * once). Each batch is one commit per projection, moving its checkpoint to the batch's last
 * position even when no event concerned it. If another runner moved a checkpoint, the
 * runner reloads the checkpoints and reads on from there: an event is never applied twice.
 */
export const createProjectionRunner = (options: ProjectionRunnerOptions): ProjectionRunner => {
  const { log, store, projections } = options;
  const logger = options.logger ?? silentLogger();
  const batchSize = Math.max(1, options.batchSize ?? 5000);
  const cacheDocs = options.cacheDocs ?? 10_000;
  const minBackoffMs = options.minBackoffMs ?? 100;
  const maxBackoffMs = options.maxBackoffMs ?? 10_000;
  /** A live queue this long means we are far behind: read pages instead. */
  const highWater = 4 * batchSize;

  const names = projections.map((p) => p.name);
  if (new Set(names).size !== names.length) {
    throw new ShoalError('CONFIG_INVALID', `projection names must be unique: ${names.join(', ')}`);
  }

  const committed = new Map<string, Position>(names.map((name) => [name, 0]));
  const positions$ = new BehaviorSubject<Readonly<Record<string, Position>>>(
    Object.fromEntries(committed),
  );
  const waiters = new Set<Waiter>();

  let running = false;
  let loopDone: Promise<void> | undefined;
  let abort = new AbortController();
  /** Ends the live phase early (stop), set while following. */
  let interrupt: (() => void) | undefined;
  let wakeFromBackoff: (() => void) | undefined;
  /** Work on the store is one session at a time: the loop, or a `catchUp` without `start`. */
  let sessionLock: Promise<unknown> = Promise.resolve();

  const exclusive = <T>(fn: () => Promise<T>): Promise<T> => {
    const run = sessionLock.then(fn, fn);
    sessionLock = run.catch(() => undefined);
    return run;
  };

  const minCommitted = (): Position => Math.min(...committed.values());

  const positionOf = (name?: string): Position => {
    if (name === undefined) return projections.length === 0 ? Infinity : minCommitted();
    const position = committed.get(name);
    if (position === undefined) {
      throw new ShoalError(
        'PROJECTION_UNKNOWN',
        `this runner has no projection "${name}" (it runs ${names.join(', ')})`,
      );
    }
    return position;
  };

  const publish = (applier: Applier) => {
    const { name } = applier.projection;
    if (committed.get(name) === applier.checkpoint()) return;
    committed.set(name, applier.checkpoint());
    positions$.next(Object.fromEntries(committed));
    for (const waiter of [...waiters]) waiter.check();
  };

  /** Loads checkpoints; rebuilds projections whose stored version differs from the code's. */
  const openSession = async (signal?: AbortSignal): Promise<Applier[]> => {
    const appliers: Applier[] = [];
    for (const projection of projections) {
      const stored = await store.storedVersion(projection.name);
      let checkpoint = await store.checkpoint(projection.name);
      if (stored !== undefined && stored !== projection.version) {
        logger.warn(
          { projection: projection.name, stored, version: projection.version },
          'projection reducer changed version: rebuilding its state from the log',
        );
        const result = await rebuildProjection({
          log,
          store,
          projection,
          logger,
          ...(signal !== undefined && { signal }),
        });
        checkpoint = result.position;
      }
      // No stored version: nothing was ever committed (or it was reset), so no documents.
      const empty = stored === undefined;
      const applier = createApplier(store, projection, { checkpoint, empty, cacheDocs });
      appliers.push(applier);
      publish(applier);
    }
    return appliers;
  };

  const nextPosition = (appliers: readonly Applier[]) =>
    Math.min(...appliers.map((a) => a.position())) + 1;

  /** Applies one batch to every projection and commits each. */
  const applyBatch = async (
    appliers: readonly Applier[],
    events: readonly RecordedEvent[],
  ): Promise<Conflict | undefined> => {
    for (const applier of appliers) {
      await applier.apply(events);
      if (!(await applier.flush())) return conflicted;
      publish(applier);
    }
    return undefined;
  };

  /**
   * Reads pages: while running, until one comes back short (near the head: the subscription
   * takes over); with `until`, until every projection has applied it.
   */
  const pull = async (
    appliers: readonly Applier[],
    until?: Position,
  ): Promise<Conflict | undefined> => {
    for (;;) {
      if (until === undefined ? !running : nextPosition(appliers) > until) return undefined;
      const page = await log.readBatch(nextPosition(appliers), { limit: batchSize });
      if (page.length === 0) return undefined;
      if ((await applyBatch(appliers, page)) === conflicted) return conflicted;
      if (until === undefined && page.length < batchSize) return undefined;
    }
  };

  /** Follows the log live until stopped, too far behind, or another writer interferes. */
  const follow = (appliers: readonly Applier[]) =>
    new Promise<'stopped' | 'behind' | Conflict>((resolve, reject) => {
      const queue: RecordedEvent[] = [];
      // Assigned after `subscribe` returns; a log may deliver (and we may finish) before that.
      const live: { subscription?: Subscription } = {};
      let finished = false;
      let draining: Promise<void> | undefined;
      let scheduled = false;

      const finish = (outcome: 'stopped' | 'behind' | Conflict | Error) => {
        if (finished) return;
        finished = true;
        interrupt = undefined;
        live.subscription?.unsubscribe();
        queue.length = 0;
        // Settle after the batch in flight, so the caller owns the store again.
        void (draining ?? Promise.resolve()).then(() =>
          outcome instanceof Error ? reject(outcome) : resolve(outcome),
        );
      };

      const drain = async () => {
        try {
          while (!finished && queue.length > 0) {
            const batch = queue.splice(0, batchSize);
            if ((await applyBatch(appliers, batch)) === conflicted) finish(conflicted);
          }
        } catch (error) {
          finish(error instanceof Error ? error : new Error(String(error)));
        }
      };

      const schedule = () => {
        if (scheduled || finished) return;
        scheduled = true;
        // setImmediate: let a burst delivered in one go land in the same batch.
        setImmediate(() => {
          scheduled = false;
          if (draining !== undefined || finished) return;
          draining = drain().finally(() => {
            draining = undefined;
            if (queue.length > 0) schedule();
          });
        });
      };

      interrupt = () => finish('stopped');
      live.subscription = log.subscribe(nextPosition(appliers)).subscribe({
        next: (event) => {
          if (finished) return;
          queue.push(event);
          if (queue.length > highWater) finish('behind');
          else schedule();
        },
        error: (error: unknown) =>
          finish(error instanceof Error ? error : new Error(String(error))),
        complete: () =>
          finish(new ShoalError('INTERNAL', 'the log ended the subscription (closed?)')),
      });
      if (finished) live.subscription.unsubscribe();
    });

  const runSession = async (): Promise<void> => {
    const appliers = await openSession(abort.signal);
    for (;;) {
      if (!running) return;
      if ((await pull(appliers)) === conflicted) throw conflicted;
      if (!running) return;
      const outcome = await follow(appliers);
      if (outcome === 'stopped') return;
      if (outcome === conflicted) throw conflicted;
    }
  };

  const backoff = (ms: number) =>
    new Promise<void>((resolve) => {
      const timer = setTimeout(done, ms);
      function done() {
        clearTimeout(timer);
        wakeFromBackoff = undefined;
        resolve();
      }
      wakeFromBackoff = done;
    });

  const loop = async () => {
    let failures = 0;
    while (running) {
      try {
        await exclusive(runSession);
      } catch (error) {
        if (!running) break;
        if (error === conflicted) {
          logger.debug('another runner moved a checkpoint: reloading checkpoints');
          failures = 0;
          continue;
        }
        failures += 1;
        const delay = Math.min(maxBackoffMs, minBackoffMs * 2 ** (failures - 1));
        logger.error(
          { err: error, attempt: failures, retryInMs: delay, positions: positions$.value },
          'projection runner failed; retrying',
        );
        await backoff(delay);
      }
    }
  };

  const waitUntil = (reached: () => boolean, timeoutMs: number, onTimeout: () => Error) =>
    new Promise<void>((resolve, reject) => {
      if (reached()) {
        resolve();
        return;
      }
      let timer: NodeJS.Timeout | undefined;
      const waiter: Waiter = {
        reject: (error) => {
          waiters.delete(waiter);
          clearTimeout(timer);
          reject(error);
        },
        check: () => {
          if (!reached()) return;
          waiters.delete(waiter);
          clearTimeout(timer);
          resolve();
        },
      };
      waiters.add(waiter);
      if (Number.isFinite(timeoutMs)) {
        timer = setTimeout(() => waiter.reject(onTimeout()), Math.max(0, timeoutMs));
      }
    });

  const summary = () => names.map((name) => `${name} ${committed.get(name)}`).join(', ');

  const catchUpAlone = async (): Promise<Position> => {
    for (;;) {
      const head = await log.head();
      const appliers = await openSession();
      if ((await pull(appliers, head)) !== conflicted) return positionOf();
      logger.debug('another runner moved a checkpoint: reloading checkpoints');
    }
  };

  return {
    start() {
      if (running) return;
      running = true;
      abort = new AbortController();
      loopDone = loop();
    },

    async stop() {
      if (!running) return;
      running = false;
      abort.abort();
      interrupt?.();
      wakeFromBackoff?.();
      await loopDone;
      for (const waiter of [...waiters]) {
        waiter.reject(
          new ShoalError('POSITION_NOT_REACHED', `projection runner stopped at ${summary()}`, {
            detail: { positions: Object.fromEntries(committed) },
          }),
        );
      }
    },

    position: positionOf,

    waitFor(position: Position, timeoutMs: number, name?: string) {
      if (!Number.isSafeInteger(position) || position < 0) {
        return Promise.reject(
          new ShoalError('POSITION_INVALID', `invalid log position ${String(position)}`),
        );
      }
      try {
        positionOf(name);
      } catch (error) {
        return Promise.reject(error);
      }
      const what = name === undefined ? 'projections' : `projection ${name}`;
      return waitUntil(
        () => positionOf(name) >= position,
        timeoutMs,
        () =>
          new ShoalError(
            'POSITION_NOT_REACHED',
            `${what} did not reach log position ${position} within ${timeoutMs} ms: ` +
              `at ${positionOf(name)} (${summary()})`,
            {
              detail: {
                wanted: position,
                current: positionOf(name),
                positions: Object.fromEntries(committed),
                timeoutMs,
              },
            },
          ),
      );
    },

    positions$: positions$.asObservable(),

    async catchUp() {
      if (!running) return exclusive(catchUpAlone);
      const head = await log.head();
      await waitUntil(
        () => positionOf() >= head,
        Infinity,
        () => new ShoalError('INTERNAL', 'unreachable'),
      );
      return positionOf();
    },
  };
};

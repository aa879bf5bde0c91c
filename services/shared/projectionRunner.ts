import type { Observable, Subscription } from 'rxjs';
import { BehaviorSubject } from 'rxjs';
import type { EventLog, Position, Projection, ProjectionStore, RecordedEvent } from '../../domain';
import { ShoalError } from '../../domain';
import type { Logger } from './logger';
import { silentLogger } from './logger';
import type { ProjectionApplier } from './projectionApplier';
import { createProjectionApplier } from './projectionApplier';
import { rebuildProjection } from './rebuildProjection';

const conflicted = Symbol('conflicted');
/** Another writer moved a checkpoint under us (a second runner on the same store). */
type Conflict = typeof conflicted;

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

  const publish = (applier: ProjectionApplier) => {
    const { name } = applier.projection;
    if (committed.get(name) === applier.checkpoint()) return;
    committed.set(name, applier.checkpoint());
    positions$.next(Object.fromEntries(committed));
    for (const waiter of [...waiters]) waiter.check();
  };

  /** Loads checkpoints; rebuilds projections whose stored version differs from the code's. */
  const openSession = async (signal?: AbortSignal): Promise<ProjectionApplier[]> => {
    const appliers: ProjectionApplier[] = [];
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
      const applier = createProjectionApplier(store, projection, { checkpoint, empty, cacheDocs });
      appliers.push(applier);
      publish(applier);
    }
    return appliers;
  };

  const nextPosition = (appliers: readonly ProjectionApplier[]) =>
    Math.min(...appliers.map((a) => a.position())) + 1;

  /** Applies one batch to every projection and commits each. */
  const applyBatch = async (
    appliers: readonly ProjectionApplier[],
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
    appliers: readonly ProjectionApplier[],
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
  const follow = (appliers: readonly ProjectionApplier[]) =>
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

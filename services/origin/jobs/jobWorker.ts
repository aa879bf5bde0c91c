import type { Clock } from '../../../domain';
import { isShoalError } from '../../../domain';
import type { Logger } from '../../shared/logger';
import type { JobKind, JobRow, OriginDb } from '../store/originDb';

/** What a handler decided: the work is done, or it no longer makes sense (both end the job). */
export type JobOutcome = 'done' | 'dropped';

/** Runs one job; throws to retry it later. Must stop promptly when `signal` aborts. */
export type JobHandler = (job: JobRow, signal: AbortSignal) => Promise<JobOutcome>;

export type JobWorkerOptions = {
  readonly db: OriginDb;
  /** Handlers by kind; a job of a kind without one fails (and is retried). */
  readonly handlers: Readonly<Partial<Record<JobKind, JobHandler>>>;
  readonly clock: Clock;
  readonly logger: Logger;
  readonly concurrency: number;
  readonly minBackoffMs: number;
  readonly maxBackoffMs: number;
  /** Wait this long after `start` before the first job runs. */
  readonly startDelayMs?: number;
  /**
   * Holds jobs of some kinds back while `delay()` answers more than 0 (ms until it is worth
   * asking again): write-back waits for the origin to be quiet, so it does not compete with
   * pushes and pulls for the disk and the CPU. A job due for `maxHoldMs` runs anyway.
   */
  readonly holdBack?: {
    readonly kinds: readonly JobKind[];
    readonly delay: () => number;
    readonly maxHoldMs: number;
  };
  readonly random?: () => number;
  readonly onOutcome?: (kind: JobKind, outcome: JobOutcome | 'failed') => void;
};

const keyOf = (job: Pick<JobRow, 'kind' | 'digest' | 'target'>) =>
  `${job.kind}\u0000${job.digest}\u0000${job.target}`;

/** Longest delay setTimeout accepts. */
const maxTimer = 2 ** 31 - 1;

/**
 * Runs the durable job queue: due jobs up to `concurrency` at once, failures retried with
 * exponential backoff and jitter (forever: a backend outage must not lose a write-back).
 * The queue lives in the origin's SQLite file, so a restart — even after kill -9 — resumes
 * where it stopped; handlers are idempotent, so a job cut short is simply run again.
 */
export const createJobWorker = (options: JobWorkerOptions) => {
  const { db, handlers, clock, logger } = options;
  const random = options.random ?? Math.random;
  const inflight = new Map<string, { promise: Promise<void>; abort: AbortController }>();
  let running = false;
  let started = false;
  let timer: NodeJS.Timeout | undefined;

  const backoff = (attempts: number) => {
    const base = Math.min(
      options.maxBackoffMs,
      options.minBackoffMs * 2 ** Math.min(attempts - 1, 30),
    );
    return Math.max(1, Math.round(base * (0.5 + random() * 0.5)));
  };

  const run = (job: JobRow) => {
    const abort = new AbortController();
    const key = keyOf(job);
    const handler = handlers[job.kind];
    const promise = (async () => {
      try {
        if (handler === undefined) throw new Error(`no handler for ${job.kind} jobs`);
        const outcome = await handler(job, abort.signal);
        db.deleteJob(job);
        options.onOutcome?.(job.kind, outcome);
        logger.debug({ job: { kind: job.kind, digest: job.digest, target: job.target } }, outcome);
      } catch (error) {
        if (abort.signal.aborted) return; // stopping: the job stays queued as it was
        const attempts = job.attempts + 1;
        const delay = backoff(attempts);
        const message = isShoalError(error) ? `${error.code}: ${error.message}` : String(error);
        db.failJob(job, clock.now() + delay, message);
        options.onOutcome?.(job.kind, 'failed');
        logger.warn(
          { job: { kind: job.kind, digest: job.digest, target: job.target }, attempts, delay },
          `job failed, retrying: ${message}`,
        );
      }
    })().finally(() => {
      inflight.delete(key);
      schedule();
    });
    inflight.set(key, { promise, abort });
  };

  function schedule(): void {
    if (!running || !started) return;
    if (timer !== undefined) clearTimeout(timer);
    timer = undefined;
    const now = clock.now();
    const hold = options.holdBack;
    const holding = hold === undefined ? 0 : hold.delay();
    const held = (kind: JobKind) => holding > 0 && (hold?.kinds.includes(kind) ?? false);
    const free = options.concurrency - inflight.size;
    if (free > 0) {
      // Ask for more than the free slots: some due jobs may be the ones already running.
      const limit = free + inflight.size;
      const due = holding > 0 ? dueHolding(now, limit, held) : db.dueJobs(now, limit);
      for (const job of due) {
        if (inflight.size >= options.concurrency) break;
        if (!inflight.has(keyOf(job))) run(job);
      }
    }
    let next = db.nextDueAfter(now);
    // Held jobs are due already: look again when the hold may be over (only if there are).
    const waiting = () => hold?.kinds.some((kind) => db.dueJobsOf(kind, now, 1).length > 0);
    if (holding > 0 && waiting()) next = Math.min(next ?? Infinity, now + holding);
    if (next !== undefined) {
      timer = setTimeout(schedule, Math.min(maxTimer, Math.max(1, next - now)));
    }
  }

  /** Due jobs by kind, held kinds only once they waited their longest. */
  const dueHolding = (now: number, limit: number, held: (kind: JobKind) => boolean) =>
    (Object.keys(handlers) as JobKind[])
      .flatMap((kind) =>
        db.dueJobsOf(kind, held(kind) ? now - (options.holdBack?.maxHoldMs ?? 0) : now, limit),
      )
      .sort((a, b) => a.notBefore - b.notBefore);

  return {
    start: (): void => {
      if (running) return;
      running = true;
      const begin = () => {
        started = true;
        schedule();
      };
      if ((options.startDelayMs ?? 0) > 0) {
        timer = setTimeout(begin, Math.min(maxTimer, options.startDelayMs ?? 0));
      } else {
        begin();
      }
    },
    /** New jobs were enqueued: look now rather than at the next timer. */
    wake: (): void => schedule(),
    /** Jobs running right now. */
    get busy(): number {
      return inflight.size;
    },
    /** Stops picking jobs and aborts those running; they stay queued for the next start. */
    stop: async (): Promise<void> => {
      running = false;
      if (timer !== undefined) clearTimeout(timer);
      timer = undefined;
      const current = [...inflight.values()];
      for (const { abort } of current) abort.abort();
      await Promise.allSettled(current.map((c) => c.promise));
    },
  };
};

export type JobWorker = ReturnType<typeof createJobWorker>;

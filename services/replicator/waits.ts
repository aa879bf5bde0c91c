import type { Position } from '../../domain';

// Waits the replicator's loops share: each ends early when the replicator stops, so a stop
// never waits on a backoff, the log, or a projection.

/** A promise that `sleep` resolves after `ms`, or at once when `signal` aborts. */
export const sleep = (ms: number, signal: AbortSignal) =>
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
export const unlessAborted = <T>(promise: Promise<T>, signal: AbortSignal): Promise<T> =>
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
export const createWatermark = (initial: Position) => {
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

export type Watermark = ReturnType<typeof createWatermark>;

/** Stops a timer; calling it again, or after a one-shot timer fired, does nothing. */
export type CancelTimer = () => void;

/**
 * Monotonic time and timers, the only way the scheduler and the peer connection read the
 * clock or wait: a simulator drives them with simulated time by passing its own. Timers never
 * keep the process alive (the system ones are `unref`'d).
 */
export interface Timers {
  /** Milliseconds, monotonic. */
  now(): number;
  /** Runs `run` once, `ms` from now. */
  after(ms: number, run: () => void): CancelTimer;
  /** Runs `run` every `ms` until cancelled. */
  every(ms: number, run: () => void): CancelTimer;
}

/** `performance.now` and Node's timers, unref'd. */
export const systemTimers: Timers = {
  now: () => performance.now(),
  after: (ms, run) => {
    const timer = setTimeout(run, ms);
    timer.unref();
    return () => clearTimeout(timer);
  },
  every: (ms, run) => {
    const timer = setInterval(run, ms);
    timer.unref();
    return () => clearInterval(timer);
  },
};

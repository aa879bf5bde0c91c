/**
 * How long to wait before retrying a failed replication: exponential in the attempt number,
 * capped, with jitter so that many changes failing at once (a destination went down) do not
 * retry in lock-step. Pure: the random value comes in as an argument.
 */
export type BackoffPolicy = {
  /** Delay after the first failure, before jitter. */
  readonly initialMs: number;
  /** Cap on the delay, before jitter. */
  readonly maxMs: number;
  /** Growth per attempt (2 doubles). */
  readonly multiplier: number;
  /**
   * Fraction of the delay that is random, 0..1: the delay is drawn from
   * `[base × (1 − jitter), base]`. 0 gives exact delays, 1 "full jitter".
   */
  readonly jitter: number;
};

export const defaultBackoff: BackoffPolicy = {
  initialMs: 500,
  maxMs: 60_000,
  multiplier: 2,
  jitter: 0.5,
};

/**
 * The delay before attempt `attempt + 1`, after `attempt` (≥ 1) failures, given `random` in
 * [0, 1). Never negative, never above `maxMs`.
 */
export const backoffDelay = (attempt: number, policy: BackoffPolicy, random: number): number => {
  const n = Math.max(1, Math.floor(attempt));
  const jitter = Math.min(1, Math.max(0, policy.jitter));
  const r = Math.min(1, Math.max(0, random));
  // Exponent capped so the power never overflows to Infinity for absurd attempt counts.
  const exponent = Math.min(n - 1, 64);
  const base = Math.min(policy.maxMs, policy.initialMs * policy.multiplier ** exponent);
  return Math.max(0, Math.round(base * (1 - jitter * r)));
};

/** Whether a change that failed `attempt` times is given up on (`maxAttempts` 0: never). */
export const givesUp = (attempt: number, maxAttempts: number): boolean =>
  maxAttempts > 0 && attempt >= maxAttempts;

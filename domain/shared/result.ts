import type { ShoalError } from './errors';

/** Parsers return a Result instead of throwing: the caller decides how to report the error. */
export type Result<T, E = ShoalError> = { ok: true; value: T } | { ok: false; error: E };

export const ok = <T>(value: T): Result<T, never> => ({ ok: true, value });
export const fail = <E>(error: E): Result<never, E> => ({ ok: false, error });

/** Unwraps a Result at an edge where throwing is the right thing (CLI argument parsing, tests). */
export const orThrow = <T>(result: Result<T, ShoalError>): T => {
  if (!result.ok) throw result.error;
  return result.value;
};

import type { Position } from '../log/event';

/** The oldest tag change a rule still has to replicate. */
export type PendingChange = { readonly position: Position; readonly at: string };

/**
 * How far a destination is behind its source log:
 * - `positions`: log positions from the oldest unreplicated matching change to the head,
 *   both included (head − last caught-up position); 0 when nothing matching is pending;
 * - `seconds`: now − the time of that change; 0 when nothing is pending.
 */
export type Lag = { readonly positions: number; readonly seconds: number };

export const replicationLag = (input: {
  readonly head: Position;
  readonly firstPending?: PendingChange;
  /** Milliseconds since the epoch. */
  readonly now: number;
}): Lag => {
  const pending = input.firstPending;
  if (pending === undefined) return { positions: 0, seconds: 0 };
  const at = Date.parse(pending.at);
  return {
    positions: Math.max(1, input.head - pending.position + 1),
    seconds: Number.isNaN(at) ? 0 : Math.max(0, (input.now - at) / 1000),
  };
};

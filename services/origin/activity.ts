import type { Clock } from '../../domain';

/**
 * Blob transfers running on this origin (uploads, puts, reads), so that background work can
 * wait for a quiet moment instead of competing with clients for the disk and the CPU.
 */
export const createActivity = (clock: Clock, quietMs: number) => {
  let running = 0;
  let lastEnd = Number.NEGATIVE_INFINITY;
  return {
    /** A transfer starts; call the returned function (once is enough) when it ends. */
    begin: (): (() => void) => {
      running += 1;
      let ended = false;
      return () => {
        if (ended) return;
        ended = true;
        running -= 1;
        lastEnd = clock.now();
      };
    },
    /** Milliseconds until the origin will have been quiet for `quietMs`; 0 when it has. */
    untilQuiet: (): number =>
      running > 0 ? quietMs : Math.max(0, Math.ceil(lastEnd + quietMs - clock.now())),
    /** Transfers running now. */
    get running(): number {
      return running;
    },
  };
};

export type Activity = ReturnType<typeof createActivity>;

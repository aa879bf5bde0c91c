/**
 * One holder per key at a time, in this process; others queue in call order. Upload
 * sessions lock their id (one operation per session at a time); blobs lock their digest: what
 * lands a blob on this origin's disk and records it on the log (commit, put, fill) excludes
 * what drops the copy of a collected blob or evicts one, so a drop never removes bytes a new
 * upload has just recorded.
 */
export const createKeyedLocks = () => {
  const tails = new Map<string, Promise<unknown>>();
  return {
    run: async <T>(key: string, fn: () => Promise<T>): Promise<T> => {
      const previous = tails.get(key) ?? Promise.resolve();
      const run = previous.then(fn, fn);
      const tail = run.catch(() => undefined);
      tails.set(key, tail);
      try {
        return await run;
      } finally {
        if (tails.get(key) === tail) tails.delete(key);
      }
    },
    /** Whether someone holds or waits for the key's lock. */
    busy: (key: string): boolean => tails.has(key),
  };
};

export type KeyedLocks = ReturnType<typeof createKeyedLocks>;

import type { ProjectionStore } from '../../domain';

/** Rows read from one partition at most, so that no page of the console reads without end. */
export const scanCap = 10_000;

/** Documents of a partition in id order, at most `cap`; `capped` when more were left. */
export const listUpTo = async <D>(
  store: ProjectionStore,
  projection: string,
  partition: string,
  cap = scanCap,
): Promise<{ items: Array<{ id: string; doc: D }>; capped: boolean }> => {
  const items: Array<{ id: string; doc: D }> = [];
  const page = 1000;
  for (;;) {
    const after = items.at(-1)?.id;
    const rows = await store.list<D>(projection, partition, {
      ...(after !== undefined && { after }),
      limit: Math.min(page, cap + 1 - items.length),
    });
    items.push(...rows);
    if (items.length > cap) return { items: items.slice(0, cap), capped: true };
    if (rows.length < page) return { items, capped: false };
  }
};

/**
 * Partition names that start with `prefix`, in order, after `after`, at most `limit` (the
 * store lists partitions in code-point order, so they are contiguous).
 */
export const partitionsWithPrefix = async (
  store: ProjectionStore,
  projection: string,
  prefix: string,
  options: { after?: string; limit: number },
): Promise<string[]> => {
  const out: string[] = [];
  let after = options.after !== undefined && options.after > prefix ? options.after : prefix;
  // `prefix` itself sorts before every longer name that starts with it.
  for (;;) {
    const names = await store.partitions(projection, { after, limit: 500 });
    for (const name of names) {
      if (!name.startsWith(prefix)) return out;
      out.push(name);
      if (out.length >= options.limit) return out;
    }
    if (names.length < 500) return out;
    after = names.at(-1) as string;
  }
};

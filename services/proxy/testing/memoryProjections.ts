import type { Subscription } from 'rxjs';
import type { DocKey, EventLog, Position, Projection } from '../../../domain';
import { ShoalError } from '../../../domain';

/**
 * Projections kept in memory for proxy tests: applies events from `log.subscribe` to plain
 * maps and answers the reads the proxy makes of a `ProjectionStore`. A stand-in with the
 * same observable behaviour as the projection runner (`start`, `stop`, `waitFor`), so the
 * proxy's tests do not depend on the store adapters.
 */
export const createMemoryProjections = (log: EventLog, projections: readonly Projection[]) => {
  const docs = new Map<string, Map<string, { key: DocKey; doc: unknown }>>();
  let applied: Position = 0;
  let subscription: Subscription | undefined;
  const waiters = new Set<{ position: Position; resolve: () => void }>();
  const table = (name: string) => {
    let t = docs.get(name);
    if (t === undefined) docs.set(name, (t = new Map()));
    return t;
  };
  const keyOf = (key: DocKey) => `${key.partition}\u0000${key.id}`;

  const store = {
    get: async <D>(projection: string, key: DocKey) =>
      table(projection).get(keyOf(key))?.doc as D | undefined,
    list: async <D>(
      projection: string,
      partition: string,
      options: { after?: string; limit?: number } = {},
    ) =>
      [...table(projection).values()]
        .filter((e) => e.key.partition === partition)
        .map((e) => ({ id: e.key.id, doc: e.doc as D }))
        .sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0))
        .filter((e) => options.after === undefined || e.id > options.after)
        .slice(0, options.limit ?? Number.MAX_SAFE_INTEGER),
    partitions: async (projection: string, options: { after?: string; limit?: number } = {}) =>
      [...new Set([...table(projection).values()].map((e) => e.key.partition))]
        .sort()
        .filter((p) => options.after === undefined || p > options.after)
        .slice(0, options.limit ?? Number.MAX_SAFE_INTEGER),
  };

  return {
    /** The read side of a ProjectionStore (cast where a full store is wanted). */
    store,
    start: () => {
      subscription = log.subscribe(1).subscribe((event) => {
        for (const projection of projections) {
          if (!projection.eventTypes.includes(event.type)) continue;
          const t = table(projection.name);
          for (const key of projection.keysOf(event)) {
            const next = projection.evolve(t.get(keyOf(key))?.doc, event, key);
            if (next === undefined) t.delete(keyOf(key));
            else t.set(keyOf(key), { key, doc: next });
          }
        }
        applied = event.position;
        for (const waiter of waiters) {
          if (waiter.position <= applied) {
            waiters.delete(waiter);
            waiter.resolve();
          }
        }
      });
    },
    stop: async () => subscription?.unsubscribe(),
    waitFor: (position: Position, timeoutMs = 2000): Promise<void> =>
      position <= applied
        ? Promise.resolve()
        : new Promise((resolve, reject) => {
            const waiter = { position, resolve: () => (clearTimeout(timer), resolve()) };
            const timer = setTimeout(() => {
              waiters.delete(waiter);
              reject(new ShoalError('POSITION_NOT_REACHED', `position ${position} not reached`));
            }, timeoutMs);
            waiters.add(waiter);
          }),
  };
};

import type { DocChange, DocKey, Position, ProjectionStore } from '../../../domain';
import { docKeyString } from '../../../domain';
import {
  checkCommit,
  compareCodePoints,
  createDocDigest,
  listLimit,
  storeClosed,
} from '../storeRules';

type Partition = {
  /** id → the document as JSON text: a read hands out a copy, as a persistent store would. */
  readonly docs: Map<string, string>;
  /** Ids in code-point order; dropped when an id is added or removed, rebuilt on demand. */
  sorted: string[] | undefined;
};

type State = {
  checkpoint: Position;
  version: number | undefined;
  readonly partitions: Map<string, Partition>;
  sortedPartitions: string[] | undefined;
};

/** Index of the first element of `sorted` that is greater than `after`. */
const firstAfter = (sorted: readonly string[], after: string): number => {
  let lo = 0;
  let hi = sorted.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (compareCodePoints(sorted[mid] as string, after) <= 0) lo = mid + 1;
    else hi = mid;
  }
  return lo;
};

/** Index of the first element of `sorted` that is not less than `before`. */
const firstNotBefore = (sorted: readonly string[], before: string): number => {
  let lo = 0;
  let hi = sorted.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (compareCodePoints(sorted[mid] as string, before) < 0) lo = mid + 1;
    else hi = mid;
  }
  return lo;
};

/**
 * A ProjectionStore in memory, for unit tests and scratch rebuilds (`replay --verify`). It
 * keeps the whole contract except durability: documents are stored as JSON text, so what a
 * caller reads is a copy and what it can store is what SQLite can, and listings sort by code
 * point like SQLite's BINARY collation.
 */
export const createMemoryProjectionStore = (): ProjectionStore => {
  const states = new Map<string, State>();
  let closed = false;

  const ensureOpen = () => {
    if (closed) throw storeClosed();
  };

  const stateOf = (projection: string): State | undefined => states.get(projection);

  const createdState = (projection: string): State => {
    let state = states.get(projection);
    if (state === undefined) {
      state = { checkpoint: 0, version: undefined, partitions: new Map(), sortedPartitions: [] };
      states.set(projection, state);
    }
    return state;
  };

  const sortedIds = (partition: Partition): string[] =>
    (partition.sorted ??= [...partition.docs.keys()].sort(compareCodePoints));

  const sortedPartitions = (state: State): string[] =>
    (state.sortedPartitions ??= [...state.partitions.keys()].sort(compareCodePoints));

  const write = (state: State, key: DocKey, json: string | undefined) => {
    let partition = state.partitions.get(key.partition);
    if (json === undefined) {
      if (partition?.docs.delete(key.id) !== true) return;
      partition.sorted = undefined;
      if (partition.docs.size === 0) {
        state.partitions.delete(key.partition);
        state.sortedPartitions = undefined;
      }
      return;
    }
    if (partition === undefined) {
      partition = { docs: new Map(), sorted: undefined };
      state.partitions.set(key.partition, partition);
      state.sortedPartitions = undefined;
    }
    if (!partition.docs.has(key.id)) partition.sorted = undefined;
    partition.docs.set(key.id, json);
  };

  const read = (projection: string, key: DocKey): string | undefined =>
    stateOf(projection)?.partitions.get(key.partition)?.docs.get(key.id);

  return {
    async checkpoint(projection: string) {
      ensureOpen();
      return stateOf(projection)?.checkpoint ?? 0;
    },

    async storedVersion(projection: string) {
      ensureOpen();
      return stateOf(projection)?.version;
    },

    async getMany(projection: string, keys: readonly DocKey[]) {
      ensureOpen();
      const found = new Map<string, unknown>();
      for (const key of keys) {
        const json = read(projection, key);
        if (json !== undefined) found.set(docKeyString(key), JSON.parse(json));
      }
      return found;
    },

    async get<D>(projection: string, key: DocKey) {
      ensureOpen();
      const json = read(projection, key);
      return json === undefined ? undefined : (JSON.parse(json) as D);
    },

    async list<D>(
      projection: string,
      partitionName: string,
      options: { after?: string; limit?: number; reverse?: boolean } = {},
    ) {
      ensureOpen();
      const partition = stateOf(projection)?.partitions.get(partitionName);
      const limit = listLimit(options.limit);
      const out: Array<{ id: string; doc: D }> = [];
      if (partition === undefined || limit === 0) return out;
      const ids = sortedIds(partition);
      const { after } = options;
      const take = (id: string) => {
        out.push({ id, doc: JSON.parse(partition.docs.get(id) as string) as D });
        return out.length < limit;
      };
      if (options.reverse === true) {
        const end = after === undefined ? ids.length : firstNotBefore(ids, after);
        for (let i = end - 1; i >= 0 && take(ids[i] as string); i--);
      } else {
        const start = after === undefined ? 0 : firstAfter(ids, after);
        for (let i = start; i < ids.length && take(ids[i] as string); i++);
      }
      return out;
    },

    async partitions(projection: string, options: { after?: string; limit?: number } = {}) {
      ensureOpen();
      const state = stateOf(projection);
      const limit = listLimit(options.limit);
      if (state === undefined || limit === 0) return [];
      const names = sortedPartitions(state);
      const start = options.after === undefined ? 0 : firstAfter(names, options.after);
      return names.slice(start, limit === Infinity ? undefined : start + limit);
    },

    async commit(
      projection: string,
      batch: { from: Position; to: Position; version: number; changes: readonly DocChange[] },
    ) {
      ensureOpen();
      checkCommit(projection, batch);
      if ((stateOf(projection)?.checkpoint ?? 0) !== batch.from) return false;
      // Serialize everything before changing anything: a commit is all or nothing.
      const texts = batch.changes.map((change) =>
        change.doc === undefined ? undefined : JSON.stringify(change.doc),
      );
      const state = createdState(projection);
      batch.changes.forEach((change, i) => write(state, change.key, texts[i]));
      state.checkpoint = batch.to;
      state.version = batch.version;
      return true;
    },

    async reset(projection: string) {
      ensureOpen();
      states.delete(projection);
    },

    async digest(projection: string) {
      ensureOpen();
      const digest = createDocDigest();
      const state = stateOf(projection);
      if (state !== undefined) {
        for (const name of sortedPartitions(state)) {
          const partition = state.partitions.get(name) as Partition;
          for (const id of sortedIds(partition)) {
            digest.addJson(name, id, partition.docs.get(id) as string);
          }
        }
      }
      return digest.value();
    },

    async close() {
      closed = true;
      states.clear();
    },
  };
};

import type {
  DocChange,
  DocKey,
  EventLog,
  Position,
  Projection,
  ProjectionStore,
  RecordedEvent,
} from '../../domain';
import { ShoalError, docKeyString } from '../../domain';

// Feeds pure projections from the log into a ProjectionStore. Three entry points share this
// engine (`createProjectionApplier`, `replay`): the long-running runner that services start
// (projectionRunner.ts), `rebuildProjection` (reset and replay; `shoal replay`, version
// bumps) and `verifyProjection` (replay into scratch state and compare digests;
// `shoal replay --verify`).

/**
 * One projection's state between the log and the store. It evolves documents in memory
 * batch by batch and writes them with `flush`: one `commit` from the checkpoint the store
 * had to the position applied, so nothing is applied twice or skipped.
 *
 * The cache holds documents as of `position`, for keys read or written since it was last
 * cleared (`undefined`: known to be absent). It is only trusted while our commits succeed:
 * a commit from checkpoint c succeeds only if nobody committed since c, so the store still
 * holds what we read or wrote. On any failure the applier is dropped, never reused.
 * `complete` means no document outside the cache exists (the projection was empty when the
 * applier started), which spares a rebuild every read.
 */
export type ProjectionApplier = {
  readonly projection: Projection;
  /** Position of the last event the store has applied (what `flush` commits from). */
  readonly checkpoint: () => Position;
  /** Position of the last event applied in memory. */
  readonly position: () => Position;
  /** Documents changed since the last flush. */
  readonly pending: () => number;
  readonly cached: () => number;
  apply(events: readonly RecordedEvent[]): Promise<void>;
  /** Commits; false when another writer moved the checkpoint (nothing was written). */
  flush(): Promise<boolean>;
};

/** A document as the applier knows it: `doc` undefined means absent. */
type Entry = { readonly key: DocKey; doc: unknown; dirty: boolean };

export const createProjectionApplier = (
  store: ProjectionStore,
  projection: Projection,
  start: { checkpoint: Position; empty: boolean; cacheDocs: number },
): ProjectionApplier => {
  const { name, version } = projection;
  const types = new Set<string>(projection.eventTypes);
  let checkpoint = start.checkpoint;
  let position = checkpoint;
  let complete = start.empty;
  // partition → id → entry. Two lookups on short strings beat one on a concatenated key:
  // this loop runs once per event, and at a million events that is most of a replay.
  const cache = new Map<string, Map<string, Entry>>();
  let cached = 0;
  const dirty: Entry[] = [];

  const entryOf = (key: DocKey, toLoad: Entry[]): Entry => {
    let partition = cache.get(key.partition);
    if (partition === undefined) {
      partition = new Map();
      cache.set(key.partition, partition);
    }
    let entry = partition.get(key.id);
    if (entry === undefined) {
      entry = { key, doc: undefined, dirty: false };
      partition.set(key.id, entry);
      cached += 1;
      if (!complete) toLoad.push(entry);
    }
    return entry;
  };

  const noLoads: Entry[] = [];

  const set = (entry: Entry, after: unknown) => {
    if (after === entry.doc) return;
    entry.doc = after;
    if (!entry.dirty) {
      entry.dirty = true;
      dirty.push(entry);
    }
  };

  /** Evolves the documents one event touches (all at once with `evolveAll`). */
  const evolveEvent = (entries: readonly Entry[], event: RecordedEvent) => {
    if (projection.evolveAll === undefined) {
      for (const entry of entries) set(entry, projection.evolve(entry.doc, event, entry.key));
      return;
    }
    const after = projection.evolveAll(
      entries.map((entry) => entry.doc),
      event,
      entries.map((entry) => entry.key),
    );
    entries.forEach((entry, i) => set(entry, after[i]));
  };

  return {
    projection,
    checkpoint: () => checkpoint,
    position: () => position,
    pending: () => dirty.length,
    cached: () => cached,

    async apply(events) {
      const last = events[events.length - 1]?.position;
      if (last === undefined || last <= position) return;
      // Every document touched twice in the batch evolves twice, in log order.
      if (complete) {
        // Nothing to read from the store: evolve in one pass.
        for (const event of events) {
          if (event.position <= position || !types.has(event.type)) continue;
          evolveEvent(
            projection.keysOf(event).map((key) => entryOf(key, noLoads)),
            event,
          );
        }
        position = last;
        return;
      }
      // First the documents the batch needs, read in one getMany; then evolve step by step.
      const stepEvents: RecordedEvent[] = [];
      const stepEntries: Entry[][] = [];
      const toLoad: Entry[] = [];
      for (const event of events) {
        if (event.position <= position || !types.has(event.type)) continue;
        stepEvents.push(event);
        stepEntries.push(projection.keysOf(event).map((key) => entryOf(key, toLoad)));
      }
      if (toLoad.length > 0) {
        const found = await store.getMany(
          name,
          toLoad.map((entry) => entry.key),
        );
        for (const entry of toLoad) entry.doc = found.get(docKeyString(entry.key));
      }
      for (let i = 0; i < stepEntries.length; i++) {
        evolveEvent(stepEntries[i] as Entry[], stepEvents[i] as RecordedEvent);
      }
      position = last;
    },

    async flush() {
      if (position === checkpoint && dirty.length === 0) return true;
      const changes: DocChange[] = dirty.map((entry) => ({ key: entry.key, doc: entry.doc }));
      const ok = await store.commit(name, { from: checkpoint, to: position, version, changes });
      if (!ok) return false;
      checkpoint = position;
      for (const entry of dirty) entry.dirty = false;
      dirty.length = 0;
      if (cached > start.cacheDocs) {
        cache.clear();
        cached = 0;
        complete = false;
      }
      return true;
    },
  };
};

export type ReplayOptions = {
  readonly pageSize: number;
  /** Commit when this many documents changed (and always at the end). */
  readonly flushDocs: number;
  readonly cacheDocs: number;
  /** Apply events up to this position only. */
  readonly until?: Position;
  readonly signal?: AbortSignal;
  /** Called after each page with the position applied so far. */
  readonly onPage?: (position: Position) => void;
};

/**
 * Replays the log after the applier's position into its store, in pages. Stops at the end of
 * the log, at `until`, or at a conflict (another writer moved the checkpoint; the applier is
 * then spent).
 */
export const replay = async (
  log: EventLog,
  applier: ProjectionApplier,
  options: ReplayOptions,
): Promise<{ events: number; conflict: boolean }> => {
  const until = options.until ?? Infinity;
  let events = 0;
  while (applier.position() < until) {
    options.signal?.throwIfAborted();
    let page = await log.readBatch(applier.position() + 1, { limit: options.pageSize });
    if (page.length === 0) break;
    const tail = page[page.length - 1] as RecordedEvent;
    if (tail.position > until) page = page.filter((event) => event.position <= until);
    if (page.length === 0) break;
    await applier.apply(page);
    events += page.length;
    options.onPage?.(applier.position());
    if (applier.pending() >= options.flushDocs || applier.cached() > options.cacheDocs) {
      if (!(await applier.flush())) return { events, conflict: true };
    }
  }
  return { events, conflict: !(await applier.flush()) };
};

/** A rebuild found its checkpoint moved by another writer (a second runner on the store). */
export const changedUnderneath = (name: string) =>
  new ShoalError(
    'INTERNAL',
    `projection "${name}" was changed by another writer while it was being rebuilt; ` +
      'stop the other runner, or retry',
    { retriable: true, detail: { projection: name } },
  );

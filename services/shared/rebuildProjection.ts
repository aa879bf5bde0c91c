import type { EventLog, Position, Projection, ProjectionStore } from '../../domain';
import type { Logger } from './logger';
import type { Progress } from './progress';
import { changedUnderneath, createProjectionApplier, replay } from './projectionApplier';

/**
 * Events per log page when rebuilding. Large enough that round trips don't matter, small
 * enough that a page dies young: at 20,000 events a page (about 20 MB of objects) outlived
 * V8's young generation and was promoted, and GC cost more than the pages saved.
 */
export const defaultRebuildPageSize = 5_000;
/** A rebuild commits once this many documents changed since its last commit. */
export const defaultRebuildFlushDocs = 250_000;
/** Documents a rebuild keeps in memory so that it need not read back what it wrote. */
export const defaultRebuildCacheDocs = 500_000;

export type RebuildResult = {
  /** Events read from the log. */
  readonly events: number;
  /** The projection's checkpoint afterwards. */
  readonly position: Position;
  readonly ms: number;
};

/**
 * Drops a projection's state and replays the whole log into it, in large pages (`readBatch`,
 * not a subscription). It keeps the documents it wrote in memory (up to `cacheDocs`) so it
 * never reads them back, and commits once `flushDocs` documents changed and at the end: a
 * document rewritten many times during the replay is written a few times, not once per
 * event. Every commit is a consistent checkpoint; if the process dies, the runner resumes
 * from the last one. Readers see partial state while it runs.
 */
export const rebuildProjection = async (options: {
  log: EventLog;
  store: ProjectionStore;
  projection: Projection;
  logger?: Logger;
  pageSize?: number;
  flushDocs?: number;
  cacheDocs?: number;
  signal?: AbortSignal;
  /** Told the log's head as the total and each position applied as done. */
  progress?: Progress;
}): Promise<RebuildResult> => {
  const { log, store, projection, progress } = options;
  const started = performance.now();
  progress?.setTotal(await log.head());
  await store.reset(projection.name);
  const cacheDocs = options.cacheDocs ?? defaultRebuildCacheDocs;
  const applier = createProjectionApplier(store, projection, {
    checkpoint: 0,
    empty: true,
    cacheDocs,
  });
  let outcome: { events: number; conflict: boolean };
  try {
    outcome = await replay(log, applier, {
      pageSize: options.pageSize ?? defaultRebuildPageSize,
      flushDocs: options.flushDocs ?? defaultRebuildFlushDocs,
      cacheDocs,
      ...(options.signal !== undefined && { signal: options.signal }),
      ...(progress !== undefined && { onPage: (position: number) => progress.update(position) }),
    });
  } finally {
    progress?.stop();
  }
  const { events, conflict } = outcome;
  if (conflict) throw changedUnderneath(projection.name);
  const result = { events, position: applier.checkpoint(), ms: performance.now() - started };
  options.logger?.info({ projection: projection.name, ...result }, 'projection rebuilt');
  return result;
};

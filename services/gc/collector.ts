import { randomUUID } from 'node:crypto';
import type {
  BlobRemoval,
  Clock,
  EventLog,
  GcPlan,
  LinkRemoval,
  ManifestRemoval,
  Position,
  ProjectionStore,
  RecordedEvent,
  ShoalEvent,
  TagRemoval,
} from '../../domain';
import {
  blobStream,
  isShoalError,
  manifestKey,
  manifestLiveAt,
  manifestStream,
  planCollection,
  tagStream,
} from '../../domain';
import { owners } from '../../domain/placement';
import type { WriterContext } from '../shared/events';
import { newEvent } from '../shared/events';
import type { Logger } from '../shared/logger';
import { silentLogger } from '../shared/logger';
import type { GcCounts, GcReport } from './client/gcApi';
import type { GcSnapshot } from './snapshot';
import { loadSnapshot } from './snapshot';

export type GcRunOptions = {
  /** Untagged manifests and blobs younger than this stay (pushes in flight). */
  readonly graceMs: number;
  /** Removals appended between two checks of the run's age and progress reports. */
  readonly batchSize: number;
  /** Decide and report, remove nothing. */
  readonly dryRun?: boolean;
  readonly onProgress?: (progress: GcProgress) => void;
};

export type GcPhase = 'snapshot' | 'tags' | 'manifests' | 'blobs' | 'links';
export type GcProgress = { readonly phase: GcPhase; readonly done: number; readonly total: number };

const zero = (): GcCounts => ({ tags: 0, manifests: 0, blobs: 0, links: 0, bytes: 0 });

/**
 * GC runs: decide on a snapshot of the `references` projection (see `planCollection`), then
 * remove by appending events, each with a compare-and-swap on the stream of what it removes
 * at the version read, and only when that stream has not moved since the snapshot:
 *
 * - a push references a blob or child manifest by appending to its stream
 *   (`BlobReferenced`, `ManifestReferenced`, a mount's `BlobUploaded`) before its own
 *   `ManifestPushed`, then checks the stream had no collection before its reference. So of a
 *   push and a removal of the same thing, the first on the log wins and the other fails;
 * - a manifest whose removal failed is live after all: the plan is made again with it kept,
 *   before any blob it uses is considered; a tag whose deletion failed likewise;
 * - a push whose references are older than its grace is refused by the proxy, and a run
 *   longer than a quarter of its grace stops, so a reference the snapshot missed is always
 *   within the grace window (see README, "Deletion and GC").
 */
/**
 * GC is background work and takes at most half of its process's event loop: after each
 * `workSliceMs` of removals it rests as long. Appends to an embedded log are synchronous under
 * their promises (one fsync each), so GC without rests held every request of the process: a
 * push in `shoal dev` took 1–2 s per step while a run collected 2,500 blobs. With rests, a
 * request's every step finds the loop free within a slice.
 */
const workSliceMs = 5;

/** Resolves at once until `sliceMs` of work has gone by since the last rest, then rests. */
const pacer = (sliceMs: number) => {
  let since = performance.now();
  return async (): Promise<void> => {
    const worked = performance.now() - since;
    if (worked < sliceMs) return;
    await new Promise((resolve) => setTimeout(resolve, Math.min(worked, 4 * sliceMs)));
    since = performance.now();
  };
};

export const createCollector = (deps: {
  readonly log: EventLog;
  readonly store: ProjectionStore;
  readonly writer: WriterContext;
  readonly clock: Clock;
  /** Brings references, policies and placement up to the log's head; the position reached. */
  readonly sync: () => Promise<Position>;
  readonly logger?: Logger;
}) => {
  const { log, store, writer, clock } = deps;
  const logger = deps.logger ?? silentLogger();

  const run = async (options: GcRunOptions): Promise<GcReport> => {
    const started = clock.now();
    const runId = `gc-${new Date(started).toISOString().replace(/[-:.]/g, '')}-${randomUUID().slice(0, 8)}`;
    const progress = (phase: GcPhase, done: number, total: number) =>
      options.onProgress?.({ phase, done, total });
    progress('snapshot', 0, 1);
    const position = await deps.sync();
    const snapshot = await loadSnapshot(store);
    const decide = (keep: { tags: Set<string>; manifests: Set<string> }) =>
      planCollection({
        now: started,
        graceMs: options.graceMs,
        manifests: snapshot.manifests,
        blobs: snapshot.blobs,
        rules: snapshot.rules,
        keep,
      });
    const keep = { tags: new Set<string>(), manifests: new Set<string>() };
    let plan = decide(keep);
    const planMs = clock.now() - started;
    progress('snapshot', 1, 1);

    const report = {
      repositories: {} as Record<string, GcCounts>,
      rules: {} as Record<string, GcCounts>,
      removed: zero(),
      skipped: 0,
      stopped: undefined as string | undefined,
      items: {
        tags: [] as TagRemoval[],
        manifests: [] as ManifestRemoval[],
        blobs: [] as BlobRemoval[],
        links: [] as LinkRemoval[],
      },
    };
    const count = (field: keyof GcCounts, repos: readonly string[], rule?: string, n = 1) => {
      report.removed[field] += field === 'bytes' ? n : 1;
      for (const repo of repos) {
        const c = (report.repositories[repo] ??= zero());
        c[field] += n;
      }
      if (rule !== undefined) (report.rules[rule] ??= zero())[field] += n;
    };
    const recordTag = (t: TagRemoval) => {
      report.items.tags.push(t);
      count('tags', [t.repo], t.rule);
    };
    const recordManifest = (m: ManifestRemoval) => {
      report.items.manifests.push(m);
      count('manifests', [m.repo], m.rule);
    };
    const recordBlob = (b: BlobRemoval) => {
      report.items.blobs.push(b);
      count('blobs', b.repos);
      count('bytes', b.repos, undefined, b.size);
    };
    const recordLink = (l: LinkRemoval) => {
      report.items.links.push(l);
      count('links', [l.repo]);
    };

    const finish = (): GcReport => ({
      run: runId,
      dryRun: options.dryRun === true,
      position,
      graceMs: options.graceMs,
      startedAt: new Date(started).toISOString(),
      ms: clock.now() - started,
      planMs,
      examined: plan.examined,
      removed: report.removed,
      skipped: report.skipped,
      ...(report.stopped !== undefined && { stopped: report.stopped }),
      repositories: report.repositories,
      rules: report.rules,
      items: report.items,
    });

    if (options.dryRun === true) {
      plan.tags.forEach(recordTag);
      plan.manifests.forEach(recordManifest);
      plan.blobs.forEach(recordBlob);
      plan.links.forEach(recordLink);
      return finish();
    }

    // A reference the snapshot missed is at most a quarter of the grace window old when its
    // push checks it; past that much run time, stop and let the next run carry on. A run
    // without grace (asked for explicitly) has no such bound: the compare-and-swap on each
    // removal is what keeps pushes safe, the bound only keeps plans fresh.
    const budgetMs = options.graceMs === 0 ? Infinity : options.graceMs / 4;
    const tooLong = () => {
      if (clock.now() - started <= budgetMs) return false;
      report.stopped = `the run took longer than a quarter of its grace window (${budgetMs} ms)`;
      return true;
    };

    /** The stream as it is now, when it has not moved since the snapshot. */
    const unchanged = async (stream: string): Promise<RecordedEvent[] | undefined> => {
      const events = await log.readStream(stream);
      const last = events[events.length - 1];
      return last === undefined || last.position > position ? undefined : events;
    };
    /** Appends one removal with compare-and-swap on its stream; false when it lost. */
    const casAppend = async (event: ShoalEvent, events: readonly RecordedEvent[]) => {
      try {
        await log.append([event], {
          expectedVersion: (events[events.length - 1] as RecordedEvent).streamVersion,
        });
        return true;
      } catch (error) {
        if (isShoalError(error, 'WRONG_EXPECTED_VERSION')) return false;
        throw error;
      }
    };
    const ids = { correlationId: runId };
    /**
     * Between batches, waits until the projections have applied what this run appended: a
     * push's read-your-writes then waits behind one batch of removals at most, not the run.
     */
    const settle = async () => {
      await deps.sync();
    };
    const pace = pacer(workSliceMs);

    // Tags a retention rule does not keep.
    for (let i = 0; i < plan.tags.length; i++) {
      await pace();
      if (i % options.batchSize === 0) {
        if (i > 0) await settle();
        progress('tags', i, plan.tags.length);
        if (tooLong()) return finish();
      }
      const t = plan.tags[i] as TagRemoval;
      const events = await log.readStream(tagStream(t.repo, t.tag));
      const last = events[events.length - 1];
      const same =
        last?.type === 'TagPushed' && last.position === t.position && last.data.digest === t.digest;
      const removed =
        same &&
        (await casAppend(
          newEvent(
            writer,
            'TagDeleted',
            {
              repo: t.repo,
              tag: t.tag,
              previous: t.digest,
              retention: { rule: t.rule, run: runId },
            },
            ids,
          ),
          events,
        ));
      if (removed) recordTag(t);
      else {
        report.skipped += 1;
        keep.tags.add(`${t.repo}:${t.tag}`);
      }
    }
    if (keep.tags.size > 0) plan = decide(keep);

    // Manifests, parents first; one that turns out live makes the plan be made again.
    const done = new Set<string>();
    let pending = plan.manifests;
    for (let i = 0; i < pending.length; i++) {
      await pace();
      if (i % options.batchSize === 0) {
        if (i > 0) await settle();
        progress('manifests', done.size, pending.length);
        if (tooLong()) return finish();
      }
      const m = pending[i] as ManifestRemoval;
      const key = manifestKey(m.repo, m.digest);
      if (done.has(key)) continue;
      const events = await unchanged(manifestStream(m.repo, m.digest));
      const removed =
        events !== undefined &&
        manifestLiveAt(events, Infinity) &&
        (await casAppend(
          newEvent(
            writer,
            'ManifestCollected',
            {
              repo: m.repo,
              digest: m.digest,
              size: m.size,
              ...([...m.blobs, ...m.manifests].length > 0 && {
                references: [...m.blobs, ...m.manifests],
              }),
              ...(m.subject !== undefined && { subject: m.subject }),
              run: runId,
              reason: m.reason,
              ...(m.rule !== undefined && { rule: m.rule }),
            },
            ids,
          ),
          events,
        ));
      done.add(key);
      if (removed) {
        recordManifest(m);
        continue;
      }
      report.skipped += 1;
      keep.manifests.add(key);
      plan = decide(keep);
      pending = plan.manifests.filter((next) => !done.has(manifestKey(next.repo, next.digest)));
      i = -1;
    }

    // Blobs, then links.
    const eraserOf = (digest: string) => owners(digest, snapshot.members, 1)[0];
    for (let i = 0; i < plan.blobs.length; i++) {
      await pace();
      if (i % options.batchSize === 0) {
        if (i > 0) await settle();
        progress('blobs', i, plan.blobs.length);
        if (tooLong()) return finish();
      }
      const b = plan.blobs[i] as BlobRemoval;
      const events = await unchanged(blobStream(b.digest));
      const eraser = eraserOf(b.digest);
      const removed =
        events !== undefined &&
        (await casAppend(
          newEvent(
            writer,
            'BlobCollected',
            {
              digest: b.digest,
              size: b.size,
              repos: [...b.repos],
              run: runId,
              reason: b.reason,
              ...(eraser !== undefined && { eraser }),
            },
            ids,
          ),
          events,
        ));
      if (removed) recordBlob(b);
      else report.skipped += 1;
    }
    for (let i = 0; i < plan.links.length; i++) {
      await pace();
      if (i % options.batchSize === 0) {
        if (i > 0) await settle();
        progress('links', i, plan.links.length);
        if (tooLong()) return finish();
      }
      const l = plan.links[i] as LinkRemoval;
      const events = await unchanged(blobStream(l.digest));
      const removed =
        events !== undefined &&
        (await casAppend(
          newEvent(
            writer,
            'BlobUnlinked',
            { digest: l.digest, repo: l.repo, size: l.size, run: runId, reason: 'unreferenced' },
            ids,
          ),
          events,
        ));
      if (removed) recordLink(l);
      else report.skipped += 1;
    }
    progress('links', plan.links.length, plan.links.length);
    const result = finish();
    logger.info(
      { run: runId, removed: result.removed, skipped: result.skipped, ms: result.ms },
      'gc run done',
    );
    return result;
  };

  return { run };
};

export type Collector = ReturnType<typeof createCollector>;
export type { GcCounts, GcPlan, GcReport, GcSnapshot };

import type { Subscription } from 'rxjs';
import { bufferTime, concatMap } from 'rxjs';
import type { Digest, RecordedEvent } from '../../domain';
import type { OriginContext } from './context';
import type { NewJob } from './store/originDb';

const cursor = 'collections';
/** Events read between two saves of the cursor when none of them concerns this origin. */
const saveEvery = 1000;

/**
 * Follows the log for `BlobCollected` and turns each into durable jobs on this origin: drop
 * its copy (when it has one, or jobs for the blob), and — when GC named this origin the
 * eraser — delete the blob's backend objects. The jobs and the cursor past the event are one
 * transaction in the origin's db, so after a crash nothing is missed and nothing done again.
 */
export const followCollections = (ctx: OriginContext) => {
  let subscription: Subscription | undefined;
  let retry: NodeJS.Timeout | undefined;
  let stopped = false;
  let seen = 0;
  let unsaved = 0;

  const jobsFor = async (event: RecordedEvent<'BlobCollected'>): Promise<NewJob[]> => {
    const { digest, eraser } = event.data;
    const jobs: NewJob[] = [];
    const held =
      (await ctx.content.stat(digest as Digest)) !== undefined || ctx.db.jobsOf(digest).length > 0;
    if (held) jobs.push({ kind: 'drop', digest, target: ctx.selfId, eventId: '' });
    if (eraser === ctx.selfId)
      jobs.push({ kind: 'erase', digest, target: 'backends', eventId: '' });
    return jobs;
  };

  /**
   * A batch of events (what arrived within 100 ms, up to 500): the jobs of its collections
   * and the cursor past it in one transaction, so a GC run's thousands of removals cost a
   * few commits here, not one each.
   */
  const handle = async (events: RecordedEvent[]) => {
    if (stopped || events.length === 0) return;
    const jobs: NewJob[] = [];
    for (const event of events) {
      if (event.type === 'BlobCollected') {
        jobs.push(...(await jobsFor(event as RecordedEvent<'BlobCollected'>)));
      }
    }
    if (stopped) return;
    seen = (events[events.length - 1] as RecordedEvent).position;
    unsaved += events.length;
    if (jobs.length === 0 && unsaved < saveEvery) return;
    ctx.db.enqueueAt(cursor, seen, jobs, ctx.clock.now());
    unsaved = 0;
    if (jobs.length > 0) ctx.wakeJobs();
  };

  const start = (delayMs = 0): void => {
    retry = setTimeout(() => {
      if (stopped) return;
      subscription = ctx.log
        .subscribe(ctx.db.cursor(cursor) + 1)
        .pipe(
          bufferTime(100, null, 500),
          concatMap((events) => handle(events)),
        )
        .subscribe({
          error: (error: unknown) => {
            ctx.logger.warn({ err: error }, 'following collections failed; retrying');
            start(Math.min(10_000, Math.max(500, delayMs * 2)));
          },
        });
    }, delayMs);
  };

  return {
    start: () => start(0),
    /** The position of the last event looked at. */
    get position(): number {
      return seen;
    },
    stop: () => {
      stopped = true;
      if (retry !== undefined) clearTimeout(retry);
      subscription?.unsubscribe();
      if (unsaved > 0) ctx.db.enqueueAt(cursor, seen, [], ctx.clock.now());
    },
  };
};

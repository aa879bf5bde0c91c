import type { Backend } from '../backendRouter';
import type { Digest } from '../../../domain';
import { blobStream, collectedLife, placedInLife } from '../../../domain';
import type { OriginContext } from '../context';
import { deterministicEventId, newEvent } from '../../shared/events';
import type { JobHandler } from './jobWorker';

/**
 * Drop: GC collected the blob; this origin's copy and the jobs of that life go. Under the
 * blob's lock, and only when this origin recorded no copy since the collection: a new
 * upload (or copy, or fill) here after it is the blob's new life and stays.
 */
export const dropHandler =
  (ctx: OriginContext): JobHandler =>
  (job) =>
    ctx.blobLocks.run(job.digest, async () => {
      const digest = job.digest as Digest;
      const events = await ctx.log.readStream(blobStream(digest));
      if (collectedLife(events) === undefined) return 'dropped';
      if (placedInLife(events, ctx.selfId)) return 'done';
      ctx.db.deleteJobsOfKinds(digest, ['write-back', 'place']);
      const removed = await ctx.content.remove(digest);
      ctx.db.deleteMetainfo(digest);
      if (removed) ctx.metrics.collected.inc({ what: 'copy' });
      return 'done';
    });

/**
 * Erase: this origin is the one GC named to delete a collected blob's backend objects — in
 * every backend its life was written back to or its repositories route to, never a read-only
 * one (a pull-through namespace only drops cached bytes). Then `BlobErased`, which releases
 * the write-back of a new life of the blob. Skipped (but recorded) when the blob was uploaded
 * again before this ran: the object is the new life's.
 */
export const eraseHandler =
  (ctx: OriginContext): JobHandler =>
  async (job) => {
    const digest = job.digest as Digest;
    const events = await ctx.log.readStream(blobStream(digest));
    const life = collectedLife(events);
    if (life === undefined) return 'dropped';
    const collected = life.collected.position;
    const uploadedAgain = events.some((e) => e.position > collected && e.type === 'BlobUploaded');
    const erased: string[] = [];
    if (!uploadedAgain) {
      const targets = new Map<Backend['store'], Backend>();
      const add = (backend: Backend | undefined) => {
        if (backend !== undefined && !backend.readOnly) targets.set(backend.store, backend);
      };
      for (const name of life.backends) add(ctx.backends.byName(name));
      for (const repo of life.repos) add(ctx.backends.forRepo(repo));
      for (const backend of targets.values()) {
        await backend.store.delete(backend.objectName(digest));
        erased.push(backend.name);
        ctx.metrics.collected.inc({ what: 'object' });
      }
    }
    await ctx.log.append([
      newEvent(
        ctx.writer,
        'BlobErased',
        {
          digest,
          collected,
          origin: ctx.selfId,
          backends: erased,
          ...(uploadedAgain && { skipped: true }),
        },
        { id: deterministicEventId('BlobErased', digest, collected) },
      ),
    ]);
    return 'done';
  };

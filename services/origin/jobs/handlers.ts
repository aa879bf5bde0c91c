import type { Digest } from '../../../domain';
import {
  ShoalError,
  blobStream,
  lastCollection,
  pendingErasure,
  persistedIn,
  storedAt,
} from '../../../domain';
import type { BuiltBlob } from '../../../p2p/metainfo';
import { MetainfoBuilder, encodeMetainfo, pieceLengthFor } from '../../../p2p/metainfo';
import type { Backend } from '../backendRouter';
import type { OriginContext } from '../context';
import { newEvent } from '../../shared/events';
import type { JobHandler } from './jobWorker';

/**
 * Copies a local blob to the backend, hashing it on the way: its metainfo comes out of the
 * same pass, and a local copy that no longer matches its digest (a disk gone bad) fails the
 * put before it completes, so the backend never gets a corrupt object.
 */
const putChecked = async (
  ctx: OriginContext,
  backend: Backend,
  digest: Digest,
  stream: AsyncIterable<Uint8Array>,
  size: number,
): Promise<BuiltBlob> => {
  const builder = new MetainfoBuilder(pieceLengthFor(size));
  let built: BuiltBlob | undefined;
  async function* checked(): AsyncGenerator<Uint8Array> {
    for await (const chunk of stream) {
      builder.update(chunk);
      yield chunk;
    }
    built = builder.finish();
    ctx.metrics.bytesOut.inc({ target: 'write-back' }, built.length);
    ctx.metrics.egress('backend', built.length);
    if (built.digest !== digest) {
      ctx.logger.error({ digest, computed: built.digest }, 'local blob does not match its digest');
      throw new ShoalError('INTERNAL', `local copy of ${digest} is corrupt; not written back`);
    }
  }
  await backend.store.put(backend.objectName(digest), checked(), { size });
  if (built === undefined) throw new ShoalError('INTERNAL', `write-back of ${digest} cut short`);
  return built;
};

/**
 * Why a job on a blob GC collected before must wait (it is retried with backoff): its new
 * life's upload is not on the log yet, or the collected life's backend objects are still to
 * be erased by a ring member (writing first would let the erasure delete the new copy).
 */
const waitAfterCollection = async (
  ctx: OriginContext,
  digest: Digest,
  events: Awaited<ReturnType<OriginContext['log']['readStream']>>,
): Promise<void> => {
  if (lastCollection(events) === undefined) return;
  if (!storedAt(events, Infinity)) {
    throw new ShoalError(
      'SERVICE_UNAVAILABLE',
      `${digest} was collected and its new upload is not on the log yet`,
    );
  }
  const erasure = pendingErasure(events);
  if (erasure !== undefined && (await ctx.ring.members()).some((m) => m.id === erasure.eraser)) {
    throw new ShoalError(
      'SERVICE_UNAVAILABLE',
      `${digest} waits until origin ${erasure.eraser} has erased the backend objects of its ` +
        'collected copy',
    );
  }
};

/**
 * Write-back: makes the backend hold the blob, then appends `BlobPersisted`. Idempotent: a
 * backend that already has the object is not written again, and the event's id is fixed
 * per job, so a retry after a crash between the put and the append adds nothing twice.
 * After a collection it writes only the new life, once the old one's objects are erased;
 * a collection during the put leaves the event out (the eraser deletes the object).
 */
export const writeBackHandler =
  (ctx: OriginContext): JobHandler =>
  async (job, signal) => {
    const digest = job.digest as Digest;
    const backend = ctx.backends.byName(job.target);
    if (backend === undefined) {
      // The config lost the backend this blob was meant for: keep the job until it is back.
      throw new ShoalError(
        'STORAGE_UNAVAILABLE',
        `write-back of ${digest}: no backend named "${job.target}" is configured`,
      );
    }
    if (backend.readOnly) {
      ctx.logger.warn({ digest, backend: backend.name }, 'write-back to a read-only backend');
      return 'dropped';
    }
    const name = backend.objectName(digest);
    const events = await ctx.log.readStream(blobStream(digest));
    await waitAfterCollection(ctx, digest, events);
    const collected = lastCollection(events)?.position;
    const here = await ctx.content.stat(digest);
    const there = await backend.store.stat(name);
    if (there !== undefined && (here === undefined || there.size === here.size)) {
      // Already persisted (an earlier push, another origin): record it once, not per push.
      if (persistedIn(events).includes(backend.name)) return 'done';
    } else if (here === undefined) {
      ctx.logger.error({ digest }, 'write-back: the blob is gone from this origin; dropping');
      return 'dropped';
    } else {
      const read = await ctx.content.read(digest);
      // Destroyed without an error: nothing may be listening yet (the backend is still
      // opening its file), and the copy fails all the same with a premature close.
      const stop = () => read.stream.destroy();
      signal.addEventListener('abort', stop, { once: true });
      try {
        const built = await putChecked(ctx, backend, digest, read.stream, read.size);
        // Uploads leave the piece hashes to this pass, which reads the blob anyway.
        if (built.metainfo !== undefined && ctx.db.getMetainfo(digest) === undefined) {
          ctx.db.putMetainfo(digest, encodeMetainfo(built.metainfo));
        }
      } finally {
        signal.removeEventListener('abort', stop);
        read.stream.destroy();
      }
    }
    if (lastCollection(await ctx.log.readStream(blobStream(digest)))?.position !== collected) {
      ctx.logger.info({ digest }, 'write-back: the blob was collected meanwhile; not recorded');
      return 'dropped';
    }
    await ctx.log.append([
      newEvent(ctx.writer, 'BlobPersisted', { digest, backend: backend.name }, { id: job.eventId }),
    ]);
    return 'done';
  };

/**
 * Placement: copies the blob to another owner of its digest, which records `BlobPlaced` when
 * it has it. Skipped when the target has it already, dropped when the target left the ring.
 */
export const placeHandler =
  (ctx: OriginContext): JobHandler =>
  async (job, signal) => {
    const digest = job.digest as Digest;
    const target = (await ctx.ring.members()).find((m) => m.id === job.target);
    if (target === undefined) {
      ctx.logger.info({ digest, target: job.target }, 'placement target left the ring');
      return 'dropped';
    }
    await waitAfterCollection(ctx, digest, await ctx.log.readStream(blobStream(digest)));
    const peer = ctx.peer(target.address);
    if ((await peer.statBlob(digest, { local: true })) !== undefined) return 'done';
    if ((await ctx.content.stat(digest)) === undefined) {
      ctx.logger.error({ digest }, 'placement: the blob is gone from this origin; dropping');
      return 'dropped';
    }
    const read = await ctx.content.read(digest);
    try {
      await peer.putBlob(digest, read.stream, { size: read.size, replicaOf: ctx.selfId, signal });
    } finally {
      read.stream.destroy();
    }
    ctx.metrics.bytesOut.inc({ target: 'replica' }, read.size);
    ctx.metrics.egress('origin', read.size);
    return 'done';
  };

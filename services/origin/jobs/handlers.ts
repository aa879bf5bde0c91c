import { Readable } from 'node:stream';
import type { Digest } from '../../../domain';
import { blobStream } from '../../../domain';
import type { OriginContext } from '../context';
import { originEvent } from '../context';
import type { JobHandler } from './jobWorker';

/** Passes chunks through, counting them. */
export async function* counted(
  source: AsyncIterable<Uint8Array>,
  onBytes: (n: number) => void,
): AsyncGenerator<Uint8Array> {
  for await (const chunk of source) {
    onBytes(chunk.length);
    yield chunk;
  }
}

/**
 * Write-back: makes the backend hold the blob, then appends `BlobPersisted`. Idempotent: a
 * backend that already has the object is not written again, and the event's id is fixed
 * per job, so a retry after a crash between the put and the append adds nothing twice.
 */
export const writeBackHandler =
  (ctx: OriginContext): JobHandler =>
  async (job, signal) => {
    const digest = job.digest as Digest;
    const name = ctx.objectName(digest);
    const here = await ctx.content.stat(digest);
    const there = await ctx.backend.stat(name);
    if (there !== undefined && (here === undefined || there.size === here.size)) {
      // Already persisted (an earlier push, another origin): record it once, not per push.
      const recorded = (await ctx.log.readStream(blobStream(digest))).some(
        (e) => e.type === 'BlobPersisted' && e.data.backend === ctx.backend.name,
      );
      if (recorded) return 'done';
    } else if (here === undefined) {
      ctx.logger.error({ digest }, 'write-back: the blob is gone from this origin; dropping');
      return 'dropped';
    } else {
      const read = await ctx.content.read(digest);
      const stop = () => read.stream.destroy(new Error('write-back aborted'));
      signal.addEventListener('abort', stop, { once: true });
      try {
        await ctx.backend.put(
          name,
          counted(read.stream, (n) => ctx.metrics.bytesOut.inc({ target: 'write-back' }, n)),
          { size: read.size },
        );
      } finally {
        signal.removeEventListener('abort', stop);
        read.stream.destroy();
      }
    }
    await ctx.log.append([
      originEvent(ctx.writer, 'BlobPersisted', { digest, backend: ctx.backend.name }, job.eventId),
    ]);
    return 'done';
  };

/**
 * Replication: copies the blob to another owner, which records `BlobPlaced` when it has it.
 * Skipped when the target has it already, dropped when the target left the ring.
 */
export const replicateHandler =
  (ctx: OriginContext): JobHandler =>
  async (job, signal) => {
    const digest = job.digest as Digest;
    const target = (await ctx.ring.members()).find((m) => m.id === job.target);
    if (target === undefined) {
      ctx.logger.info({ digest, target: job.target }, 'replication target left the ring');
      return 'dropped';
    }
    const peer = ctx.peer(target.address);
    if ((await peer.statBlob(digest, { local: true })) !== undefined) return 'done';
    if ((await ctx.content.stat(digest)) === undefined) {
      ctx.logger.error({ digest }, 'replication: the blob is gone from this origin; dropping');
      return 'dropped';
    }
    const read = await ctx.content.read(digest);
    const body = Readable.from(
      counted(read.stream, (n) => ctx.metrics.bytesOut.inc({ target: 'replica' }, n)),
      { objectMode: false },
    );
    try {
      await peer.putBlob(digest, body, { size: read.size, replicaOf: ctx.selfId, signal });
    } finally {
      body.destroy();
      read.stream.destroy();
    }
    return 'done';
  };

import type { Digest } from '../../domain';
import { newEvent } from '../shared/events';
import type { OriginContext } from './context';

/**
 * Drops this origin's copy of a blob it no longer owns — the ring changed while it was away —
 * once every owner holds its own copy on disk (asked with a local HEAD, not taken from the
 * projection), and records `BlobReleased` so the placement projection stops naming it.
 * Never while the copy is being read, has a write-back or placement job pending, or is being
 * landed or dropped by someone else (the blob's lock). Resolves whether it released; one that
 * is already gone from disk (a crash between the two steps) is recorded again.
 */
export const createRingRelease =
  (ctx: OriginContext) =>
  async (digest: string, owners: readonly string[]): Promise<boolean> => {
    const blob = digest as Digest;
    const members = new Map((await ctx.ring.members()).map((m) => [m.id, m.address]));
    for (const owner of owners) {
      const address = members.get(owner);
      if (address === undefined || owner === ctx.selfId) return false;
      const held = await ctx
        .peer(address)
        .statBlob(digest, { local: true })
        .catch(() => undefined);
      if (held === undefined) return false;
    }
    return ctx.blobLocks.run(digest, async () => {
      if (ctx.content.isReading(blob) || ctx.db.jobsOf(blob).length > 0) return false;
      await ctx.content.remove(blob);
      ctx.db.deleteMetainfo(blob);
      await ctx.log.append([
        newEvent(ctx.writer, 'BlobReleased', { digest: blob, origin: ctx.selfId }),
      ]);
      return true;
    });
  };

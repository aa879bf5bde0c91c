import type { EventLog, Position, Projection, ProjectionStore } from '../../domain';
import { ShoalError } from '../../domain';
import type { Progress } from './progress';
import { changedUnderneath, createProjectionApplier, replay } from './projectionApplier';
import {
  defaultRebuildCacheDocs,
  defaultRebuildFlushDocs,
  defaultRebuildPageSize,
} from './rebuildProjection';

export type VerifyResult = {
  /** Digest of the live state at `position`. */
  readonly live: string;
  /** Digest of a fresh replay up to the same position. */
  readonly rebuilt: string;
  readonly position: Position;
  readonly equal: boolean;
};

/**
 * Checks that the live state is what replaying the log gives: brings the live projection up
 * to the head of the log (when another runner is doing that, it lets it), takes the digest
 * of the live state and its checkpoint, replays into `scratch` up to exactly that position
 * and compares. The live state must have been built by this version of the projection.
 */
export const verifyProjection = async (options: {
  log: EventLog;
  store: ProjectionStore;
  projection: Projection;
  scratch: ProjectionStore;
  pageSize?: number;
  /** Told the position verified up to as the total and the scratch replay's position. */
  progress?: Progress;
}): Promise<VerifyResult> => {
  const { log, store, projection, scratch } = options;
  const { name } = projection;
  const pageSize = options.pageSize ?? defaultRebuildPageSize;
  const stored = await store.storedVersion(name);
  if (stored !== undefined && stored !== projection.version) {
    throw new ShoalError(
      'INTERNAL',
      `projection "${name}" was built by version ${stored} of its reducer and this is ` +
        `version ${projection.version}: rebuild it (shoal replay) before verifying it`,
      { detail: { projection: name, stored, version: projection.version } },
    );
  }

  const caughtUp = createProjectionApplier(store, projection, {
    checkpoint: await store.checkpoint(name),
    empty: stored === undefined,
    cacheDocs: 0,
  });
  // Commit every page. A conflict means a live runner is moving it along: as good.
  await replay(log, caughtUp, { pageSize, flushDocs: 0, cacheDocs: 0 });

  // The digest and the position it belongs to must match: read the checkpoint around it.
  let live: { digest: string; position: Position } | undefined;
  for (let attempt = 0; attempt < 10 && live === undefined; attempt++) {
    const before = await store.checkpoint(name);
    const digest = await store.digest(name);
    if ((await store.checkpoint(name)) === before) live = { digest, position: before };
  }
  if (live === undefined) {
    throw new ShoalError(
      'SERVICE_UNAVAILABLE',
      `projection "${name}" kept moving while its digest was taken; try again`,
      { detail: { projection: name } },
    );
  }

  await scratch.reset(name);
  const rebuilding = createProjectionApplier(scratch, projection, {
    checkpoint: 0,
    empty: true,
    cacheDocs: defaultRebuildCacheDocs,
  });
  const { progress } = options;
  progress?.setTotal(live.position);
  let scratchReplay: { conflict: boolean };
  try {
    scratchReplay = await replay(log, rebuilding, {
      pageSize,
      flushDocs: defaultRebuildFlushDocs,
      cacheDocs: defaultRebuildCacheDocs,
      until: live.position,
      ...(progress !== undefined && { onPage: (position: number) => progress.update(position) }),
    });
  } finally {
    progress?.stop();
  }
  if (scratchReplay.conflict) throw changedUnderneath(name);
  const rebuilt = await scratch.digest(name);
  return { live: live.digest, rebuilt, position: live.position, equal: live.digest === rebuilt };
};

import type { ProjectionStore } from '../../domain';
import type { BlobDoc } from '../../projections';
import { blobIndexProjection, blobPartition } from '../../projections';
import type { SwarmView, TrackerStatusClient } from '../tracker/client/trackerStatusClient';
import type { Viewer } from './viewer';
import { mayPullAny } from './viewer';

/** A swarm as the console shows it: the trackers' view, with the blob's size and repos. */
export type SwarmRow = SwarmView & {
  readonly tracker: string;
  readonly size?: number;
  readonly repos: readonly string[];
  /** Sums over the swarm's agents and origins. */
  readonly totals: {
    readonly fromPeers: number;
    readonly fromOrigins: number;
    readonly originEgress: number;
    readonly agents: number;
    readonly completeAgents: number;
  };
};

/**
 * Live swarms from the trackers (swarm state is soft state in their memory, never on the
 * log): every tracker's `GET /swarms`, joined with the blob index for the blob's size and
 * repositories (which also decide whether the viewer may see it). A tracker that cannot be
 * reached is reported, not fatal.
 */
export const createSwarmReads = (deps: {
  trackers: readonly TrackerStatusClient[];
  store: ProjectionStore;
  limit?: number;
}) => {
  const limit = deps.limit ?? 100;

  const totalsOf = (swarm: SwarmView): SwarmRow['totals'] => {
    let fromPeers = 0;
    let fromOrigins = 0;
    let originEgress = 0;
    let agents = 0;
    let completeAgents = 0;
    for (const peer of swarm.peers) {
      if (peer.origin) {
        originEgress += peer.uploaded ?? 0;
        continue;
      }
      agents += 1;
      if (peer.complete) completeAgents += 1;
      fromOrigins += peer.fromOrigins ?? 0;
      fromPeers += Math.max(0, (peer.downloaded ?? 0) - (peer.fromOrigins ?? 0));
    }
    return { fromPeers, fromOrigins, originEgress, agents, completeAgents };
  };

  return {
    configured: deps.trackers.length > 0,

    /** Every tracker's swarms now, joined with the blob index (for every viewer). */
    async snapshot(): Promise<SwarmSnapshot> {
      const answers = await Promise.all(
        deps.trackers.map(async (tracker) => {
          try {
            return { tracker: tracker.url, swarms: (await tracker.swarms(limit)).swarms };
          } catch (error) {
            return { tracker: tracker.url, error: (error as Error).message, swarms: [] };
          }
        }),
      );
      const all = answers.flatMap((a) => a.swarms.map((swarm) => ({ swarm, tracker: a.tracker })));
      const docs = await deps.store.getMany(
        blobIndexProjection.name,
        all.map(({ swarm }) => ({ partition: blobPartition, id: swarm.digest })),
      );
      const swarms = all.map(({ swarm, tracker }): SwarmRow => {
        const doc = docs.get(`${blobPartition}\u0000${swarm.digest}`) as BlobDoc | undefined;
        return {
          ...swarm,
          tracker,
          ...(doc !== undefined && { size: doc.size }),
          repos: doc?.repos ?? [],
          totals: totalsOf(swarm),
        };
      });
      swarms.sort((a, b) => b.lastSeenAt - a.lastSeenAt);
      return {
        swarms: swarms.slice(0, limit),
        trackers: answers.map((a) => ({
          url: a.tracker,
          ok: a.error === undefined,
          ...(a.error !== undefined && { error: a.error }),
        })),
      };
    },
  };
};

export type SwarmSnapshot = {
  readonly swarms: readonly SwarmRow[];
  readonly trackers: ReadonlyArray<{ url: string; ok: boolean; error?: string }>;
};

/** What a viewer may see of a snapshot: swarms of blobs in repositories they may pull. */
export const swarmsFor = (snapshot: SwarmSnapshot, viewer: Viewer): SwarmSnapshot => ({
  trackers: snapshot.trackers,
  swarms: snapshot.swarms.flatMap((swarm) =>
    mayPullAny(viewer, swarm.repos)
      ? [viewer.seesCluster ? swarm : { ...swarm, repos: swarm.repos.filter(viewer.mayPull) }]
      : [],
  ),
});

export type SwarmReads = ReturnType<typeof createSwarmReads>;

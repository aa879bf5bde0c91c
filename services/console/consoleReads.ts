import type { Clock, EventLog, Position, ProjectionStore } from '../../domain';
import { buildIndexProjection, manifestIndexProjection } from '../../projections';
import type { ReplicationApi } from '../replicator/client/replicationApi';
import type { TrackerStatusClient } from '../tracker/client/trackerStatusClient';
import type { HealthWatch } from './health';
import type { ManifestContents } from './manifestContents';
import { createManifestReads } from './manifests';
import { createPlacementReads } from './placement';
import { createReplicationReads } from './replication';
import { createRepositoryReads } from './repositories';
import { createSwarmReads } from './swarms';
import type { Viewer } from './viewer';

/**
 * Everything the console reads, over its own projections (kept by its runner from the log),
 * the log, and the services that hold what the log does not. Every read takes the viewer.
 */
export const createConsoleReads = (deps: {
  cluster: string;
  log: EventLog;
  store: ProjectionStore;
  clock: Clock;
  /** Where the console's projections are. */
  applied: () => Position;
  contents: ManifestContents;
  replication: ReplicationApi | undefined;
  trackers: readonly TrackerStatusClient[];
  health: HealthWatch;
  replicas: number;
}) => {
  const { store, log } = deps;
  const repositories = createRepositoryReads({ store, contents: deps.contents });

  /** Repositories the viewer may pull, counted up to `cap`. */
  const countRepositories = async (viewer: Viewer, cap = 10_000) => {
    const names = new Set<string>();
    for (const projection of [buildIndexProjection.name, manifestIndexProjection.name]) {
      let after: string | undefined;
      for (;;) {
        const page = await store.partitions(projection, {
          ...(after !== undefined && { after }),
          limit: 1000,
        });
        const repos = page.filter((p) => !p.startsWith('~'));
        for (const name of repos) if (viewer.mayPull(name)) names.add(name);
        if (page.length < 1000 || repos.length < page.length || names.size >= cap) break;
        after = page.at(-1);
      }
    }
    return { count: Math.min(cap, names.size), capped: names.size >= cap };
  };

  return {
    log,
    repositories,
    manifests: createManifestReads({ store, contents: deps.contents }),
    placement: createPlacementReads({ store, replicas: deps.replicas }),
    replication: createReplicationReads({ api: deps.replication, log, store, clock: deps.clock }),
    swarms: createSwarmReads({ trackers: deps.trackers, store }),

    /** The header of every page: who is looking, where the log and the console stand. */
    async overview(viewer: Viewer) {
      const [head, repos] = await Promise.all([
        log.head().then(
          (position) => ({ position }),
          (error: unknown) => ({ error: (error as Error).message }),
        ),
        countRepositories(viewer),
      ]);
      const services =
        deps.health.last().length > 0 ? deps.health.last() : await deps.health.check();
      return {
        cluster: deps.cluster,
        viewer: { actor: viewer.actor, seesCluster: viewer.seesCluster },
        log: head,
        applied: deps.applied(),
        repositories: repos,
        services,
        features: {
          manifests: deps.contents.available,
          swarms: deps.trackers.length > 0,
          replicator: deps.replication !== undefined,
        },
      };
    },
  };
};

export type ConsoleReads = ReturnType<typeof createConsoleReads>;

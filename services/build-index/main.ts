import type { AddressInfo } from 'node:net';
import type { Clock, EventLog, ProjectionStore } from '../../domain';
import {
  buildIndexProjection,
  replicationProjection,
  tagHistoryProjection,
} from '../../projections';
import { createHttpApp } from '../shared/http';
import type { Logger } from '../shared/logger';
import { createProjectionRunner } from '../shared/projectionRunner';
import type { BuildIndexConfig } from './config';
import { credentialsOf } from './replication/config';
import { registerReplicationMetrics } from './replication/metrics';
import type { ReplicationApi } from './replication/replicationApi';
import { createReplicationService } from './replication/replicationService';
import { createConfiguredReplicator } from './replication/setup';
import { replicationRoutes } from './server/replicationRoutes';
import { buildIndexRoutes } from './server/routes';
import { createTagService } from './tagService';

export type RunningService = {
  /** `http://host:port` the service listens on. */
  readonly url: string;
  readonly close: () => Promise<void>;
};

/**
 * Runs build-index on the given ports: projects tags, their history and replication state
 * from the log, serves the tags and replication APIs, and runs the replicator (unless
 * `replication.enabled` is false; one per data directory is active, see the replicator's
 * lease). The only place that listens; the composition root picks the adapters.
 */
export const startBuildIndex = async (deps: {
  config: BuildIndexConfig;
  logger: Logger;
  clock: Clock;
  log: EventLog;
  store: ProjectionStore;
  actor?: string;
}): Promise<
  RunningService & {
    readonly runner: ReturnType<typeof createProjectionRunner>;
    readonly replication: ReplicationApi;
  }
> => {
  const { config, logger, clock, log, store } = deps;
  // Bad credentials configuration fails the start, before anything runs.
  credentialsOf(config.replication);
  const runner = createProjectionRunner({
    log,
    store,
    projections: [buildIndexProjection, tagHistoryProjection, replicationProjection],
    logger: logger.child({ module: 'projections' }),
  });
  runner.start();
  const writer = { clock, cluster: config.cluster, actor: deps.actor ?? 'build-index' };
  const tags = createTagService({
    log,
    store,
    writer,
    waitFor: (position) => runner.waitFor(position, config.readYourWrites.timeoutMs),
  });
  const { app, metrics } = createHttpApp({ service: 'build-index', logger });
  // The replication API and the replicator refer to each other (status shows what the
  // replicator is doing; the replicator counts into metrics that read the status).
  const late: { replication?: ReplicationApi } = {};
  const replicatorMetrics = registerReplicationMetrics(metrics, () =>
    (late.replication as ReplicationApi).status(),
  );
  const replicator = config.replication.enabled
    ? createConfiguredReplicator({
        config: config.replication,
        cluster: config.cluster,
        dataDir: config.dataDir,
        log,
        store,
        projections: runner,
        logger: logger.child({ module: 'replicator' }),
        clock,
        metrics: replicatorMetrics,
      })
    : undefined;
  const replication = createReplicationService({
    log,
    store,
    writer,
    clock,
    waitFor: (position) =>
      runner.waitFor(position, config.readYourWrites.timeoutMs, replicationProjection.name),
    scanLimit: config.replication.statusScanLimit,
    ...(replicator !== undefined && { replicator }),
  });
  late.replication = replication;
  await app.register(buildIndexRoutes(tags));
  await app.register(replicationRoutes(replication));
  try {
    await app.listen({ host: config.listen.host, port: config.listen.port });
  } catch (error) {
    await runner.stop();
    throw error;
  }
  replicator?.start();
  const address = app.server.address() as AddressInfo;
  const url = `http://${formatHost(address.address)}:${address.port}`;
  logger.info({ url }, 'build-index listening');
  return {
    url,
    runner,
    replication,
    close: async () => {
      await replicator?.close();
      await app.close();
      await runner.stop();
    },
  };
};

export const formatHost = (host: string): string => (host.includes(':') ? `[${host}]` : host);

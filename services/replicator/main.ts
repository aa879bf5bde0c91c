import type { FastifyInstance } from 'fastify';
import type { Registry } from 'prom-client';
import type { Clock, EventLog, Lease, Projection, ProjectionStore } from '../../domain';
import {
  buildIndexProjection,
  referrersProjection,
  replicationProjection,
} from '../../projections';
import { createRoleApp } from '../shared/roleApp';
import { observeEventLog, registerProjectionMetrics } from '../shared/logMetrics';
import { startTracing } from '../shared/tracing';
import type { Logger } from '../shared/logger';
import { createProjectionRunner } from '../shared/projectionRunner';
import type { ClientIdentity } from '../shared/security/clientIdentity';
import type { RoleSecurity } from '../shared/security/roleSecurity';
import { openSecurity } from '../shared/security/roleSecurity';
import type { ApiAccess } from '../shared/security/guards';
import { createApiAccess } from '../shared/security/guards';
import type { ReplicationApi } from './client/replicationApi';
import type { ReplicationConfig, ReplicatorConfig } from './config';
import { credentialsOf } from './config';
import { createConfiguredReplicator } from './configuredReplicator';
import { registerReplicationMetrics } from './metrics';
import { createReplicationService } from './replicationService';
import type { ProjectionsView } from './replicator';
import { replicationRoutes } from './server/routes';

export { createReplicationService } from './replicationService';
export { liveLeaseHolder } from './lock';

/** What the replicator is given by the role it is mounted in (or by `startReplicator`). */
export type ReplicatorHost = {
  /** The app its rules and status API (`/v1/replication/…`) is registered in. */
  readonly app: FastifyInstance;
  /** The registry of that app's `/metrics`. */
  readonly metrics: Registry;
  /** A runner that keeps {@link ReplicatorComponent.projections} up to date. */
  readonly runner: ProjectionsView;
  /** Who may call the API (admins and cluster services change rules); none: open. */
  readonly access?: ApiAccess;
};

export type MountedReplicator = {
  readonly api: ReplicationApi;
  /** Starts replicating (once the host listens). */
  start(): void;
  close(): Promise<void>;
};

/**
 * The replicator as a part of another role: the composition root mounts it into build-index's
 * app (build-index knows nothing of it), `startReplicator` into an app of its own.
 */
export type ReplicatorComponent = {
  /**
   * The projections it reads: tags (the values it copies), replication (rules, positions) and
   * referrers (what goes with a manifest).
   */
  readonly projections: readonly Projection[];
  mount(host: ReplicatorHost): Promise<MountedReplicator>;
};

/**
 * Builds the replicator from its settings. Bad credentials configuration fails here, before
 * anything runs. Mounted, it serves the rules and status API, counts into the host's metrics,
 * and runs the replicator once started (unless `enabled` is false; one per data directory is
 * active, see the lease).
 */
export const createReplicatorComponent = (deps: {
  config: ReplicationConfig;
  cluster: string;
  dataDir: string;
  /** How long a read with `Shoal-Min-Position` waits for the replication projection. */
  readYourWritesTimeoutMs: number;
  logger: Logger;
  clock: Clock;
  log: EventLog;
  store: ProjectionStore;
  /** The actor of rule changes made through the API (the host role's name). */
  actor: string;
  /** Its identity to this cluster's origins. */
  identity?: ClientIdentity;
  /** Who runs among replicators on one log (default: `<dataDir>/replicator.lock`). */
  lease?: Lease;
}): ReplicatorComponent => {
  const { config, log, store, clock } = deps;
  credentialsOf(config);
  return {
    projections: [buildIndexProjection, replicationProjection, referrersProjection],
    async mount(host) {
      // The API and the replicator refer to each other (status shows what the replicator is
      // doing; the replicator counts into metrics that read the status).
      const late: { api?: ReplicationApi } = {};
      const metrics = registerReplicationMetrics(host.metrics, () =>
        (late.api as ReplicationApi).status(),
      );
      const replicator = config.enabled
        ? createConfiguredReplicator({
            config,
            cluster: deps.cluster,
            dataDir: deps.dataDir,
            log,
            store,
            projections: host.runner,
            logger: deps.logger.child({ module: 'replicator' }),
            clock,
            metrics,
            ...(deps.identity !== undefined && { identity: deps.identity }),
            ...(deps.lease !== undefined && { lease: deps.lease }),
          })
        : undefined;
      const api = createReplicationService({
        log,
        store,
        writer: { clock, cluster: deps.cluster, actor: deps.actor },
        clock,
        waitFor: (position) =>
          host.runner.waitFor(position, deps.readYourWritesTimeoutMs, replicationProjection.name),
        scanLimit: config.statusScanLimit,
        allowedDestinations: config.allowedDestinations,
        ...(replicator !== undefined && { replicator }),
      });
      late.api = api;
      await host.app.register(replicationRoutes(api, host.access));
      return {
        api,
        start: () => replicator?.start(),
        close: async () => {
          await replicator?.close();
        },
      };
    },
  };
};

/**
 * Runs the replicator alone (`shoal replicator`): projects tags and replication state from the
 * log, serves the rules and status API on its own listener, and replicates. The only place the
 * replicator listens; the composition root picks the adapters.
 */
export const startReplicator = async (deps: {
  config: ReplicatorConfig;
  logger: Logger;
  clock: Clock;
  log: EventLog;
  store: ProjectionStore;
  actor?: string;
  /** TLS, limits, cluster authenticators; none: open, plain HTTP (see startBuildIndex). */
  security?: RoleSecurity;
  /** Who runs among replicators on one log (default: `<dataDir>/replicator.lock`). */
  lease?: Lease;
}): Promise<{
  /** `http://host:port` the rules and status API listens on. */
  readonly url: string;
  readonly replication: ReplicationApi;
  readonly close: () => Promise<void>;
}> => {
  const { config, logger, store } = deps;
  const security = deps.security ?? openSecurity;
  const tracing = startTracing(config.tracing, 'replicator');
  const { access, users } = createApiAccess({
    auth: config.auth,
    security,
    logger: logger.child({ module: 'auth' }),
    realm: 'shoal replicator',
  });
  const { app, metrics, listen } = createRoleApp({
    service: 'replicator',
    logger,
    tracing,
    security,
    users: users.authenticators,
  });
  const log = observeEventLog(deps.log, metrics);
  const component = createReplicatorComponent({
    identity: security.identity,
    config: config.replication,
    cluster: config.cluster,
    dataDir: config.dataDir,
    readYourWritesTimeoutMs: config.readYourWrites.timeoutMs,
    logger,
    clock: deps.clock,
    log,
    store,
    actor: deps.actor ?? 'replicator',
    ...(deps.lease !== undefined && { lease: deps.lease }),
  });
  const runner = createProjectionRunner({
    log,
    store,
    projections: [...component.projections],
    logger: logger.child({ module: 'projections' }),
  });
  runner.start();
  registerProjectionMetrics(metrics, { runner, log: deps.log, clock: deps.clock });
  users.registerMetrics(metrics);
  let mounted: MountedReplicator | undefined;
  let url: string;
  try {
    mounted = await component.mount({ app, metrics, runner, access });
    ({ url } = await listen({ host: config.listen.host, port: config.listen.port }));
  } catch (error) {
    await mounted?.close();
    await app.close();
    await runner.stop();
    await tracing.shutdown();
    throw error;
  }
  mounted.start();
  logger.info({ url }, 'replicator listening');
  const running = mounted;
  return {
    url,
    replication: running.api,
    close: async () => {
      await running.close();
      await app.close();
      await runner.stop();
      await tracing.shutdown();
    },
  };
};

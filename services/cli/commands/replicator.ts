import type { Static } from '@sinclair/typebox';
import { Type } from '@sinclair/typebox';
import type { Clock, EventLog, Lease, ProjectionStore } from '../../../domain';
import { BuildIndexConfigSchema } from '../../build-index/config';
import { startBuildIndex } from '../../build-index/main';
import { GcConfigSchema } from '../../gc/config';
import { createGcComponent } from '../../gc/main';
import { ReplicationConfigSchema, ReplicatorConfigSchema } from '../../replicator/config';
import { createReplicatorComponent, startReplicator } from '../../replicator/main';
import type { Logger } from '../../shared/logger';
import type { RoleSecurity } from '../../shared/security/roleSecurity';
import { replicatorLeaseFor } from '../compose';

// Where the replicator runs: mounted in build-index (`shoal build-index`, `shoal dev`), which
// knows nothing of it, or alone (`shoal replicator`).

/**
 * `shoal build-index`'s file: build-index's settings and the sections of what is mounted in
 * it: the replicator (`replication`) and scheduled GC (`gc`).
 */
export const BuildIndexRoleConfigSchema = Type.Object({
  ...BuildIndexConfigSchema.properties,
  replication: ReplicationConfigSchema,
  gc: GcConfigSchema,
});

export type BuildIndexRoleConfig = Static<typeof BuildIndexRoleConfigSchema>;

type RoleDeps<C> = {
  config: C;
  logger: Logger;
  clock: Clock;
  log: EventLog;
  store: ProjectionStore;
  security?: RoleSecurity;
};

/** The replicator's lease across hosts when the log is Kafka's (see `replicatorLeaseFor`). */
const leaseOf = (
  config: Pick<BuildIndexRoleConfig, 'log' | 'cluster' | 'replication'>,
  logger: Logger,
): { lease?: Lease } => {
  const lease = replicatorLeaseFor(config.log, {
    cluster: config.cluster,
    leaseMs: config.replication.lock.leaseMs,
    logger,
  });
  return lease === undefined ? {} : { lease };
};

/** build-index with the replicator and GC mounted: one app, one projection runner, one listener. */
export const startBuildIndexRole = (deps: RoleDeps<BuildIndexRoleConfig>) => {
  const { config } = deps;
  const actor = 'build-index';
  const replicator = createReplicatorComponent({
    config: config.replication,
    cluster: config.cluster,
    dataDir: config.dataDir,
    readYourWritesTimeoutMs: config.readYourWrites.timeoutMs,
    logger: deps.logger,
    clock: deps.clock,
    log: deps.log,
    store: deps.store,
    actor,
    ...(deps.security !== undefined && { identity: deps.security.identity }),
    ...leaseOf(config, deps.logger),
  });
  const gc = createGcComponent({
    config: config.gc,
    cluster: config.cluster,
    logger: deps.logger,
    clock: deps.clock,
    log: deps.log,
    store: deps.store,
    actor: 'gc',
    syncTimeoutMs: Math.max(config.readYourWrites.timeoutMs, 60_000),
  });
  return startBuildIndex({ ...deps, actor, components: [replicator, gc] });
};

/** `shoal replicator`: the replicator alone, its rules and status API on its own listener. */
export const replicatorRole = {
  name: 'replicator' as const,
  description:
    'run the replicator alone: copies tags that replication rules match to other registries, ' +
    'serves the rules and status API (/v1/replication/…)',
  schema: ReplicatorConfigSchema,
  start: (deps: RoleDeps<Static<typeof ReplicatorConfigSchema>>) =>
    startReplicator({ ...deps, ...leaseOf(deps.config, deps.logger) }),
};

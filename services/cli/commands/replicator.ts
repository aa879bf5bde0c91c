import type { Static } from '@sinclair/typebox';
import { Type } from '@sinclair/typebox';
import type { Clock, EventLog, ProjectionStore } from '../../../domain';
import { BuildIndexConfigSchema } from '../../build-index/config';
import { startBuildIndex } from '../../build-index/main';
import { ReplicationConfigSchema, ReplicatorConfigSchema } from '../../replicator/config';
import { createReplicatorComponent, startReplicator } from '../../replicator/main';
import type { Logger } from '../../shared/logger';
import type { RoleSecurity } from '../../shared/security/roleSecurity';

// Where the replicator runs: mounted in build-index (`shoal build-index`, `shoal dev`), which
// knows nothing of it, or alone (`shoal replicator`).

/** `shoal build-index`'s file: build-index's settings and the mounted replicator's section. */
export const BuildIndexRoleConfigSchema = Type.Object({
  ...BuildIndexConfigSchema.properties,
  replication: ReplicationConfigSchema,
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

/** build-index with the replicator mounted: one app, one projection runner, one listener. */
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
  });
  return startBuildIndex({ ...deps, actor, components: [replicator] });
};

/** `shoal replicator`: the replicator alone, its rules and status API on its own listener. */
export const replicatorRole = {
  name: 'replicator' as const,
  description:
    'run the replicator alone: copies tags that replication rules match to other registries, ' +
    'serves the rules and status API (/v1/replication/…)',
  schema: ReplicatorConfigSchema,
  start: (deps: RoleDeps<Static<typeof ReplicatorConfigSchema>>) => startReplicator(deps),
};

import type { FastifyInstance } from 'fastify';
import type { Registry } from 'prom-client';
import type { Clock, EventLog, Projection, ProjectionStore } from '../../domain';
import { buildIndexProjection, tagHistoryProjection } from '../../projections';
import { createRoleApp } from '../shared/roleApp';
import type { Logger } from '../shared/logger';
import { observeEventLog, registerProjectionMetrics } from '../shared/logMetrics';
import { createProjectionRunner } from '../shared/projectionRunner';
import type { RoleSecurity } from '../shared/security/roleSecurity';
import { openSecurity } from '../shared/security/roleSecurity';
import { startTracing } from '../shared/tracing';
import type { ApiAccess } from '../shared/security/guards';
import { createApiAccess } from '../shared/security/guards';
import type { BuildIndexConfig } from './config';
import { buildIndexRoutes } from './server/routes';
import { createTagService } from './tagService';

export type RunningService = {
  /** `http://host:port` the service listens on. */
  readonly url: string;
  readonly close: () => Promise<void>;
};

/**
 * A part the composition root mounts into build-index (the replicator): its projections join
 * build-index's runner, its routes and metrics build-index's app, and it is started once
 * build-index listens and closed before build-index closes.
 */
export type BuildIndexComponent = {
  readonly projections: readonly Projection[];
  mount(host: {
    readonly app: FastifyInstance;
    readonly metrics: Registry;
    readonly runner: ReturnType<typeof createProjectionRunner>;
    /** Who may call the host's API: cluster services, and users (admins, policies). */
    readonly access: ApiAccess;
  }): Promise<{ start(): void; close(): Promise<void> }>;
};

/**
 * Runs build-index on the given ports: projects tags and their history from the log, serves
 * the tags API, and runs the components it is given. The only place that listens; the
 * composition root picks the adapters.
 */
export const startBuildIndex = async (deps: {
  config: BuildIndexConfig;
  logger: Logger;
  clock: Clock;
  log: EventLog;
  store: ProjectionStore;
  actor?: string;
  components?: readonly BuildIndexComponent[];
  /**
   * TLS, limits, cluster authenticators; none: open, plain HTTP. `open` lets everyone do
   * everything; `required` applies `auth`'s policies to users.
   */
  security?: RoleSecurity;
}): Promise<RunningService & { readonly runner: ReturnType<typeof createProjectionRunner> }> => {
  const { config, logger, clock, store } = deps;
  const security = deps.security ?? openSecurity;
  const tracing = startTracing(config.tracing, 'build-index');
  const { access, users } = createApiAccess({
    auth: config.auth,
    security,
    logger: logger.child({ module: 'auth' }),
    realm: 'shoal build-index',
  });
  const { app, metrics, listen } = createRoleApp({
    service: 'build-index',
    logger,
    tracing,
    security,
    users: users.authenticators,
  });
  const log = observeEventLog(deps.log, metrics);
  const components = deps.components ?? [];
  const projections: Projection[] = [buildIndexProjection, tagHistoryProjection];
  for (const component of components) {
    for (const projection of component.projections) {
      if (!projections.some((p) => p.name === projection.name)) projections.push(projection);
    }
  }
  const runner = createProjectionRunner({
    log,
    store,
    projections,
    logger: logger.child({ module: 'projections' }),
  });
  runner.start();
  registerProjectionMetrics(metrics, { runner, log: deps.log, clock });
  const writer = { clock, cluster: config.cluster, actor: deps.actor ?? 'build-index' };
  const tags = createTagService({
    log,
    store,
    writer,
    waitFor: (position) => runner.waitFor(position, config.readYourWrites.timeoutMs),
  });
  users.registerMetrics(metrics);
  await app.register(buildIndexRoutes(tags, access));
  const mounted: Array<{ start(): void; close(): Promise<void> }> = [];
  const closeMounted = async () => {
    for (const component of mounted.splice(0).reverse()) await component.close();
  };
  try {
    for (const component of components) {
      mounted.push(await component.mount({ app, metrics, runner, access }));
    }
  } catch (error) {
    await closeMounted();
    await runner.stop();
    throw error;
  }
  let url: string;
  try {
    ({ url } = await listen({ host: config.listen.host, port: config.listen.port }));
  } catch (error) {
    await closeMounted();
    await runner.stop();
    await tracing.shutdown();
    throw error;
  }
  for (const component of mounted) component.start();
  logger.info({ url }, 'build-index listening');
  return {
    url,
    runner,
    close: async () => {
      await closeMounted();
      await app.close();
      await runner.stop();
      await tracing.shutdown();
    },
  };
};

import type { AddressInfo } from 'node:net';
import type { Clock, EventLog, ProjectionStore } from '../../domain';
import { buildIndexProjection, tagHistoryProjection } from '../../projections';
import { createHttpApp } from '../shared/http';
import type { Logger } from '../shared/logger';
import { createProjectionRunner } from '../shared/projectionRunner';
import type { BuildIndexConfig } from './config';
import { buildIndexRoutes } from './server/routes';
import { createTagService } from './tagService';

export type RunningService = {
  /** `http://host:port` the service listens on. */
  readonly url: string;
  readonly close: () => Promise<void>;
};

/**
 * Runs build-index on the given ports: projects tags and their history from the log and
 * serves the tags API. The only place that listens; the composition root picks the adapters.
 */
export const startBuildIndex = async (deps: {
  config: BuildIndexConfig;
  logger: Logger;
  clock: Clock;
  log: EventLog;
  store: ProjectionStore;
  actor?: string;
}): Promise<RunningService & { readonly runner: ReturnType<typeof createProjectionRunner> }> => {
  const { config, logger, clock, log, store } = deps;
  const runner = createProjectionRunner({
    log,
    store,
    projections: [buildIndexProjection, tagHistoryProjection],
    logger: logger.child({ module: 'projections' }),
  });
  runner.start();
  const tags = createTagService({
    log,
    store,
    writer: { clock, cluster: config.cluster, actor: deps.actor ?? 'build-index' },
    waitFor: (position) => runner.waitFor(position, config.readYourWrites.timeoutMs),
  });
  const { app } = createHttpApp({ service: 'build-index', logger });
  await app.register(buildIndexRoutes(tags));
  await app.listen({ host: config.listen.host, port: config.listen.port });
  const address = app.server.address() as AddressInfo;
  const url = `http://${formatHost(address.address)}:${address.port}`;
  logger.info({ url }, 'build-index listening');
  return {
    url,
    runner,
    close: async () => {
      await app.close();
      await runner.stop();
    },
  };
};

export const formatHost = (host: string): string => (host.includes(':') ? `[${host}]` : host);

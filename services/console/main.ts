import type { Clock, EventLog, Projection, ProjectionStore } from '../../domain';
import { allProjections } from '../../projections';
import { createProxyClient } from '../proxy/client/proxyClient';
import { createReplicationClient } from '../replicator/client/replicationClient';
import { createRoleApp } from '../shared/roleApp';
import type { ApiAccess } from '../shared/security/guards';
import { createApiAccess, requireCaller } from '../shared/security/guards';
import type { Logger } from '../shared/logger';
import type { RoleSecurity } from '../shared/security/roleSecurity';
import { openSecurity } from '../shared/security/roleSecurity';
import { startTracing } from '../shared/tracing';
import { createProjectionRunner } from '../shared/projectionRunner';
import { createTrackerStatusClient } from '../tracker/client/trackerStatusClient';
import type { ConsoleConfig } from './config';
import { createConsoleReads } from './consoleReads';
import type { WatchedService } from './health';
import { createHealthWatch } from './health';
import { createLiveFeed } from './liveFeed';
import { createManifestContents } from './manifestContents';
import { assetRoutes } from './server/assets';
import { consoleRoutes } from './server/routes';
import type { ViewerOf } from './viewer';
import { openAccess, policyAccess } from './viewer';

export type RunningConsole = {
  /** `http://host:port` the console listens on. */
  readonly url: string;
  readonly close: () => Promise<void>;
};

/** The services the console watches, by role, from its configuration. */
const watchedServices = (config: ConsoleConfig): WatchedService[] => {
  const { services } = config;
  const named = (role: string, urls: readonly string[]) =>
    urls.map((url, i) => ({ role, name: urls.length > 1 ? `${role} ${i + 1}` : role, url }));
  return [
    ...named('build-index', services.buildIndexUrl === '' ? [] : [services.buildIndexUrl]),
    ...(services.replicatorUrl !== '' && services.replicatorUrl !== services.buildIndexUrl
      ? named('replicator', [services.replicatorUrl])
      : []),
    ...named('proxy', services.proxyUrl === '' ? [] : [services.proxyUrl]),
    ...named('origin', services.origins),
    ...named('tracker', services.trackers),
    ...named('agent', services.agents),
  ];
};

/**
 * What each request may see: everything in open mode; otherwise what the registry's policies
 * (the console's `auth`, the proxy's users and policies) let its subject pull, and the
 * cluster's own pages (ring, rules, swarms, every event) for admins and cluster services.
 */
const viewerOfAccess = (access: ApiAccess): ViewerOf => {
  const users = access.users;
  if (access.mode === 'open' || users === undefined) return openAccess;
  return policyAccess({
    mayPull: (subject, repo) => subject.kind === 'service' || users.access.visible(subject, repo),
    seesCluster: (subject) => subject.kind === 'service' || users.access.isAdmin(subject),
  });
};

/**
 * Runs the console: a read-only web UI and its API. It never writes to the log; it keeps its
 * own projections of it (every projection Shoal has, in the store it is given: its own, so it
 * never contends with the services it watches), follows the log for the live views, and asks
 * the proxy, the trackers and the replicator for what the log does not hold. Behind the
 * registry's logins: unless security is open, a caller without credentials is asked for them
 * (HTTP Basic, the browser's own prompt; token bearers too) unless the anonymous policy lets
 * anyone pull something, and every page shows what the caller may pull. The only place that
 * listens.
 */
export const startConsole = async (deps: {
  config: ConsoleConfig;
  logger: Logger;
  clock: Clock;
  log: EventLog;
  store: ProjectionStore;
  /** Its listener (TLS, limits) and the identity it calls the other roles with. */
  security?: RoleSecurity;
}): Promise<RunningConsole> => {
  const { config, logger, clock, log, store } = deps;
  const security = deps.security ?? openSecurity;
  const { services } = config;
  const runner = createProjectionRunner({
    log,
    store,
    projections: Object.values(allProjections) as Projection[],
    logger: logger.child({ module: 'projections' }),
  });
  runner.start();
  const calls = { timeoutMs: services.timeoutMs, identity: security.identity };
  const proxy = services.proxyUrl === '' ? undefined : createProxyClient(services.proxyUrl, calls);
  const replicatorUrl = services.replicatorUrl || services.buildIndexUrl;
  const health = createHealthWatch({ services: watchedServices(config), clock, ...calls });
  const reads = createConsoleReads({
    cluster: config.cluster,
    log,
    store,
    clock,
    applied: () => runner.position(),
    contents: createManifestContents({ proxy }),
    replication: replicatorUrl === '' ? undefined : createReplicationClient(replicatorUrl, calls),
    trackers: services.trackers.map((url) => createTrackerStatusClient(url, calls)),
    health,
    replicas: config.placement.replicas,
  });
  const live = createLiveFeed({
    log,
    applied: runner,
    health,
    swarms: reads.swarms,
    logger,
    maxClients: config.live.maxClients,
    replayLimit: config.live.replayLimit,
    healthIntervalMs: config.live.healthIntervalMs,
    swarmIntervalMs: config.live.swarmIntervalMs,
  });
  const tracing = startTracing(config.tracing, 'console');
  const { access, users } = createApiAccess({
    auth: config.auth,
    security,
    logger: logger.child({ module: 'auth' }),
    realm: 'shoal console',
  });
  const { app, metrics, listen } = createRoleApp({
    service: 'console',
    logger,
    tracing,
    security,
    users: users.authenticators,
  });
  const close = async () => {
    live.close();
    await app.close();
    await runner.stop();
    await proxy?.close();
    await tracing.shutdown();
  };
  let url = '';
  users.registerMetrics(metrics);
  try {
    // Every page, asset and API asks for a login first (the browser prompts on the page);
    // health and metrics stay outside, for probes and Prometheus.
    await app.register(async (scope) => {
      scope.addHook('onRequest', async (request) => requireCaller(request, access));
      await scope.register(assetRoutes());
      await scope.register(
        consoleRoutes({
          reads,
          live,
          viewerOf: viewerOfAccess(access),
          waitFor: (position) => runner.waitFor(position, config.readYourWrites.timeoutMs),
        }),
      );
    });
    ({ url } = await listen({ host: config.listen.host, port: config.listen.port }));
  } catch (error) {
    await close();
    throw error;
  }
  logger.info({ url }, 'console listening');
  return { url, close };
};

import type { Clock, EventLog, Position, Projection, ProjectionStore } from '../../domain';
import { ShoalError } from '../../domain';
import {
  buildIndexProjection,
  manifestIndexProjection,
  placementProjection,
  policiesProjection,
  referencesProjection,
  tagHistoryProjection,
} from '../../projections';
import { buildIndexUrls, createBuildIndexTags } from '../build-index/client/failoverTagApi';
import type { TagApi } from '../build-index/client/tagApi';
import type { BlobAccess } from '../origin/client/blobAccess';
import {
  createBlobAccess,
  ringFromOrigin,
  ringFromPlacement,
} from '../origin/client/createBlobAccess';
import type { WriterContext } from '../shared/events';
import { createRoleApp } from '../shared/roleApp';
import type { Logger } from '../shared/logger';
import { observeEventLog, registerProjectionMetrics } from '../shared/logMetrics';
import { createProjectionRunner } from '../shared/projectionRunner';
import type { RoleSecurity } from '../shared/security/roleSecurity';
import { openSecurity } from '../shared/security/roleSecurity';
import { startTracing } from '../shared/tracing';
import { bearerChallenge } from '../shared/security/challenge';
import { createUserAuth } from '../shared/security/userAuth';
import type { ProxyConfig } from './config';
import { createDistribution } from './distribution';
import { countTagRechecks } from './metrics';
import { distributionRoutes } from './server/routes';
import { tokenRoutes } from './server/tokenRoutes';

export type RunningProxy = {
  /** `http://host:port` the proxy listens on. */
  readonly url: string;
  readonly close: () => Promise<void>;
};

/**
 * Tags kept in the proxy's own process, on the log and the build-index projections the
 * proxy then keeps itself: build-index's tag service, handed in by the composition root.
 */
export type LocalTags = (deps: {
  log: EventLog;
  store: ProjectionStore;
  writer: WriterContext;
  waitFor: (position: Position) => Promise<void>;
}) => TagApi;

/**
 * Runs the proxy: the OCI Distribution API at `/v2/`, over the manifest-index projection it
 * keeps from the log, blob bytes through `BlobAccess` (the origins), and tags through
 * build-index: `tags` when given (the dev cluster), else over HTTP at `buildIndex.url`, else
 * (no URL) in-process with `localTags`, keeping the build-index and tag-history projections.
 * Without `blobs`, it reaches the origins itself: the ring as the first of `origins.urls`
 * reports it, or (no URLs) from the placement projection it keeps. The only place that
 * listens; the composition root picks adapters.
 */
export const startProxy = async (deps: {
  config: ProxyConfig;
  logger: Logger;
  clock: Clock;
  log: EventLog;
  store: ProjectionStore;
  blobs?: BlobAccess;
  tags?: TagApi;
  localTags?: LocalTags;
  actor?: string;
  /**
   * TLS, limits, authenticators (users' after the services'), the identity it calls origins
   * and build-index with; none: open, plain HTTP. In `required` mode `auth`'s policies apply.
   */
  security?: RoleSecurity;
}): Promise<RunningProxy> => {
  const { config, logger, clock, store } = deps;
  const security = deps.security ?? openSecurity;
  const identity = { identity: security.identity };
  const tracing = startTracing(config.tracing, 'proxy');
  const tokenConfig = config.auth.token;
  const auth = createUserAuth({
    config: config.auth,
    mode: security.mode,
    logger: logger.child({ module: 'auth' }),
    // Cluster services (agents) read through the proxy; they write nothing here.
    serviceActions: ['pull'],
    issueTokens: true,
    challenge: (request, scope) =>
      bearerChallenge({
        realm: tokenConfig.realm || `${request.protocol}://${request.host}/auth/token`,
        service: tokenConfig.service,
        ...(scope !== undefined && { scope }),
      }),
  });
  const { app, metrics, listen } = createRoleApp({
    service: 'proxy',
    logger,
    tracing,
    security,
    users: auth.authenticators,
  });
  const log = observeEventLog(deps.log, metrics);
  const writer = { clock, cluster: config.cluster, actor: deps.actor ?? 'proxy' };
  const buildIndexes = buildIndexUrls(config.buildIndex);
  const ownTags = deps.tags === undefined && buildIndexes.length === 0;
  if (ownTags && deps.localTags === undefined) {
    throw new ShoalError(
      'CONFIG_INVALID',
      'proxy: buildIndex.url is empty and no in-process tag service was given',
    );
  }
  // references and policies: namespace usage and quotas, checked on every push.
  const projections: Projection[] = [
    manifestIndexProjection as Projection,
    referencesProjection as Projection,
    policiesProjection as Projection,
  ];
  if (ownTags)
    projections.push(buildIndexProjection as Projection, tagHistoryProjection as Projection);
  const ringFromLog = deps.blobs === undefined && config.origins.urls.length === 0;
  if (ringFromLog) projections.push(placementProjection as Projection);
  const runner = createProjectionRunner({
    log,
    store,
    projections,
    logger: logger.child({ module: 'projections' }),
  });
  runner.start();
  registerProjectionMetrics(metrics, { runner, log: deps.log, clock });
  const waitFor = (position: number) => runner.waitFor(position, config.readYourWrites.timeoutMs);
  const tags: TagApi =
    deps.tags ??
    (ownTags
      ? (deps.localTags as LocalTags)({ log, store, writer, waitFor })
      : createBuildIndexTags(buildIndexes, identity));
  const originAccess =
    deps.blobs === undefined
      ? createBlobAccess({
          ring: ringFromLog
            ? ringFromPlacement(store)
            : ringFromOrigin(config.origins.urls[0] as string, identity),
          replicas: config.origins.replicas,
          ...identity,
        })
      : undefined;
  const blobs = deps.blobs ?? (originAccess as BlobAccess);
  const distribution = createDistribution({
    log,
    store,
    blobs,
    tags,
    writer,
    waitFor,
    limits: config.limits,
    referenceWindowMs: config.gc.referenceWindowMs,
    freshness: {
      recheckMs: config.pullThrough.tagRecheckSeconds * 1000,
      waitMs: config.pullThrough.tagRecheckWaitMs,
      logger: logger.child({ module: 'pull-through' }),
      count: countTagRechecks(metrics),
    },
  });
  auth.registerMetrics(metrics);
  await app.register(
    tokenRoutes(auth, auth.signer as NonNullable<typeof auth.signer>, {
      access: tokenConfig.lifetimeSeconds,
      refresh: tokenConfig.refreshLifetimeSeconds,
    }),
  );
  // Layer uploads and downloads may take longer than Node's default request timeout.
  app.server.requestTimeout = 0;
  await app.register(
    distributionRoutes(distribution, {
      manifestMaxBytes: config.limits.manifestMaxBytes,
      waitFor,
      metrics,
      auth,
    }),
  );
  let url: string;
  try {
    ({ url } = await listen({ host: config.listen.host, port: config.listen.port }));
  } catch (error) {
    await runner.stop();
    await originAccess?.close();
    await tracing.shutdown();
    throw error;
  }
  logger.info({ url }, 'proxy listening');
  return {
    url,
    close: async () => {
      await app.close();
      await runner.stop();
      await originAccess?.close();
      await tracing.shutdown();
    },
  };
};

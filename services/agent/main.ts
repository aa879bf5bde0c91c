import type { FastifyRequest } from 'fastify';
import { join } from 'node:path';
import type { Clock } from '../../domain';
import { ShoalError } from '../../domain';
import { createBandwidth } from '../../p2p/bandwidth';
import type { SwarmHost } from '../../p2p/swarm';
import { createSwarmHost } from '../../p2p/swarm';
import { buildIndexUrls, createBuildIndexTags } from '../build-index/client/failoverTagApi';
import type { TagApi } from '../build-index/client/tagApi';
import { openDataDir } from '../shared/dataDir';
import { validateConfig } from '../shared/config';
import { createRoleApp } from '../shared/roleApp';
import { AuthConfigSchema } from '../shared/security/authConfig';
import { bearerChallenge } from '../shared/security/challenge';
import type { UserAuth } from '../shared/security/userAuth';
import { createUserAuth } from '../shared/security/userAuth';
import type { Logger } from '../shared/logger';
import { requireService } from '../shared/security/authenticate';
import type { RoleSecurity } from '../shared/security/roleSecurity';
import { openSecurity } from '../shared/security/roleSecurity';
import { startTracing } from '../shared/tracing';
import { createTrackerClient } from '../tracker/client/trackerClient';
import { createBlobFetcher } from './blobFetcher';
import { createBlobCache } from './blobCache';
import type { AgentConfig } from './config';
import { createAgentDistribution } from './distribution';
import { createAgentMetrics } from './metrics';
import { agentRoutes } from './server/routes';

export type RunningAgent = {
  readonly id: string;
  /** `http://host:port` of its registry. */
  readonly url: string;
  /** `host:port` of its peer port. */
  readonly peerAddress: string;
  readonly host: SwarmHost;
  readonly close: () => Promise<void>;
};

/**
 * Access to the agent's registry when `auth.required`: tokens the proxy issued (checked with
 * its keys, from its JWKS), each granting pull on the repositories it names; a challenge
 * that sends clients to the proxy's token endpoint. The proxy's policies decided the grants.
 */
const agentAuth = (config: AgentConfig, logger: Logger): UserAuth => {
  const proxy = config.proxy.url.replace(/\/+$/, '');
  if (proxy === '' && (config.auth.realm === '' || config.auth.jwksUrl === '')) {
    throw new ShoalError(
      'CONFIG_INVALID',
      'agent: auth.required needs proxy.url (its token endpoint, its keys, and what each ' +
        'repository holds)',
    );
  }
  const realm = config.auth.realm || `${proxy}/auth/token`;
  return createUserAuth({
    config: validateConfig(AuthConfigSchema, {
      issuers: [
        {
          issuer: config.auth.issuer,
          audience: config.auth.service,
          jwksUrl: config.auth.jwksUrl || `${proxy}/auth/jwks`,
          access: 'claims',
        },
      ],
    }),
    mode: 'required',
    logger: logger.child({ module: 'auth' }),
    serviceActions: ['pull'],
    challenge: (_request, scope) =>
      bearerChallenge({
        realm,
        service: config.auth.service,
        ...(scope !== undefined && { scope }),
      }),
  });
};

/**
 * Runs an agent: the host's read-only registry (localhost) and its P2P peer. Blobs come
 * through the swarm (metainfo and peers from the tracker, pieces from agents and origins);
 * tags through build-index; manifests from the proxy. The only place that listens.
 */
export const startAgent = async (deps: {
  config: AgentConfig;
  logger: Logger;
  clock: Clock;
  /** In-process tags (the dev cluster); else build-index over HTTP at `buildIndex.url`. */
  tags?: TagApi;
  /** TLS, limits, authenticators, the identity it calls others with; none: open, plain HTTP. */
  security?: RoleSecurity;
}): Promise<RunningAgent> => {
  const { config } = deps;
  const security = deps.security ?? openSecurity;
  const identity = { identity: security.identity };
  const logger = deps.logger.child({ agent: config.id });
  if (config.trackers.urls.length === 0) {
    throw new ShoalError('CONFIG_INVALID', 'agent: trackers.urls names no tracker');
  }
  const tracing = startTracing(config.tracing, 'agent');
  // One authenticator chain: cluster identities first, then the proxy's tokens (auth.required).
  const auth = config.auth.required ? agentAuth(config, logger) : undefined;
  const { app, metrics, listen } = createRoleApp({
    service: 'agent',
    logger,
    tracing,
    security,
    users: auth?.authenticators ?? [],
  });
  auth?.registerMetrics(metrics);
  const agentMetrics = createAgentMetrics(metrics);
  const root = openDataDir(config.dataDir, { create: true }).sub(`agent-${config.id}`);
  const cache = await createBlobCache({
    dir: join(root, 'cache'),
    quotaBytes: config.cache.quotaBytes,
    logger: logger.child({ module: 'cache' }),
    disk: {
      highPercent: config.cache.highWatermarkPercent,
      lowPercent: config.cache.lowWatermarkPercent,
    },
    idleMs: config.cache.idleDropMs,
  });
  const trackers = createTrackerClient(config.trackers.urls, {
    timeoutMs: config.trackers.timeoutMs,
    ...identity,
  });
  const ref: { host?: SwarmHost } = {};
  const blobs = createBlobFetcher({
    host: () => ref.host as SwarmHost,
    cache,
    metainfo: (digest) => trackers.metainfo(digest),
    downloadTimeoutMs: config.download.timeoutMs,
    fsync: config.cache.fsync,
    verifyDigest: config.cache.verifyDigest,
    logger,
  });
  const host = await createSwarmHost({
    listen: { host: config.p2p.host || config.listen.host, port: config.p2p.port },
    ...(config.p2p.advertiseHost !== '' && { advertiseHost: config.p2p.advertiseHost }),
    ...(config.p2p.zone !== '' && { zone: config.p2p.zone }),
    bandwidth: createBandwidth(config.p2p.bandwidth),
    scheduler: config.p2p.scheduler,
    announcer: trackers,
    logger: logger.child({ module: 'p2p' }),
    resolveUnknown: (infoHash) => blobs.resolveUnknown(infoHash),
    onPieceStored: agentMetrics.pieceStored,
  });
  ref.host = host;
  const buildIndexes = buildIndexUrls(config.buildIndex);
  const tags =
    deps.tags ??
    (buildIndexes.length === 0 ? undefined : createBuildIndexTags(buildIndexes, identity));
  const distribution = createAgentDistribution({
    tags,
    proxyUrl: config.proxy.url,
    blobs,
    ...identity,
  });

  app.server.requestTimeout = 0;
  /** Idle blobs leave their swarms (which unpins them), then the cache sweeps. */
  const sweepCache = async () => {
    const idle = new Set(cache.idle());
    for (const swarm of host.swarms()) {
      if (idle.has(swarm.digest)) await swarm.leave('not pulled for cache.idleDropMs');
    }
    await cache.sweep();
  };
  let sweeping: Promise<void> | undefined;
  const sweeper = setInterval(() => {
    sweeping ??= sweepCache()
      .catch((error: unknown) => logger.warn({ err: error }, 'cache sweep failed'))
      .finally(() => {
        sweeping = undefined;
      });
  }, config.cache.checkIntervalMs);
  sweeper.unref();
  agentMetrics.observe(host, cache);
  const servicesOnly = async (request: FastifyRequest) => requireService(request, security.mode);
  app.get('/internal/p2p', { onRequest: servicesOnly }, async () => ({
    peerId: host.peerId.toString('hex'),
    address: host.address,
    cache: cache.stats(),
    totals: host.totals(),
    swarms: host.swarms().map((s) => ({
      digest: s.digest,
      state: s.scheduler.state,
      have: s.scheduler.have,
      pieces: s.scheduler.pieceCount,
      connections: s.scheduler.connections(),
      stats: s.scheduler.stats,
    })),
  }));
  await app.register(agentRoutes({ distribution, blobs, ...(auth !== undefined && { auth }) }));
  let url: string;
  try {
    ({ url } = await listen({ host: config.listen.host, port: config.listen.port }));
  } catch (error) {
    clearInterval(sweeper);
    await distribution.close();
    await host.close();
    await tracing.shutdown();
    throw error;
  }
  logger.info({ url, peer: host.address, trackers: config.trackers.urls }, 'agent listening');
  return {
    id: config.id,
    url,
    peerAddress: host.address,
    host,
    close: async () => {
      clearInterval(sweeper);
      await sweeping;
      const reap = setInterval(() => app.server.closeIdleConnections(), 100);
      const force = setTimeout(() => app.server.closeAllConnections(), 5000);
      try {
        await app.close();
      } finally {
        clearInterval(reap);
        clearTimeout(force);
      }
      await distribution.close();
      await host.close();
      await tracing.shutdown();
    },
  };
};

import { Counter, Gauge } from 'prom-client';
import type { Clock, Digest } from '../../domain';
import { ShoalError } from '../../domain';
import { createRoleApp } from '../shared/roleApp';
import { startTracing } from '../shared/tracing';
import type { Logger } from '../shared/logger';
import type { RoleSecurity } from '../shared/security/roleSecurity';
import { openSecurity } from '../shared/security/roleSecurity';
import { createAnnounceHandler } from './announce';
import type { TrackerConfig } from './config';
import { createOriginDirectory } from './originDirectory';
import { createPeerStore } from './peerStore';
import { trackerRoutes } from './server/routes';
import { createSwarmLedger } from './swarmLedger';

export type RunningTracker = {
  /** `http://host:port` it listens on. */
  readonly url: string;
  /** The URL origins announce to. */
  readonly advertiseUrl: string;
  readonly close: () => Promise<void>;
};

const wildcardHosts = new Set(['0.0.0.0', '::', '[::]', '']);
/**
 * Runs a tracker: matchmaking for swarms (`POST /announce`) over soft state in memory, and
 * metainfo (`GET /metainfo/:digest`) cached from the origins that own each blob. It moves no
 * blob bytes and keeps nothing on disk; the only place that listens.
 */
export const startTracker = async (deps: {
  config: TrackerConfig;
  logger: Logger;
  clock: Clock;
  /** TLS, limits, authenticators, the identity it calls origins with; none: open, plain HTTP. */
  security?: RoleSecurity;
}): Promise<RunningTracker> => {
  const { config, logger, clock } = deps;
  const security = deps.security ?? openSecurity;
  if (wildcardHosts.has(config.listen.host) && config.advertiseUrl === '') {
    throw new ShoalError(
      'CONFIG_INVALID',
      `tracker listens on ${config.listen.host}: set advertiseUrl to the URL origins reach`,
    );
  }
  if (config.origins.urls.length === 0) {
    throw new ShoalError('CONFIG_INVALID', 'tracker: origins.urls names no origin');
  }
  const ttlMs = config.announce.peerTtlMs || 3 * config.announce.intervalMs;
  const peers = createPeerStore({ ttlMs, now: () => clock.now() });
  const origins = createOriginDirectory({
    urls: config.origins.urls,
    timeoutMs: config.origins.timeoutMs,
    ringTtlMs: config.origins.ringTtlMs,
    cacheEntries: config.metainfo.cacheEntries,
    logger: logger.child({ module: 'origins' }),
    now: () => clock.now(),
    identity: security.identity,
  });
  const ledger = createSwarmLedger({
    now: () => clock.now(),
    maxSwarms: config.status.maxSwarms,
    maxPeersPerSwarm: config.status.maxPeersPerSwarm,
    retainMs: config.status.retainMs,
    peerTtlMs: ttlMs,
  });
  let advertiseUrl = config.advertiseUrl.replace(/\/+$/, '');
  const handle = createAnnounceHandler({
    peers,
    origins,
    selfUrl: () => advertiseUrl,
    config: config.announce,
    now: () => clock.now(),
    logger,
  });
  const announce: typeof handle = (request) => {
    ledger.record(request);
    return handle(request);
  };

  const tracing = startTracing(config.tracing, 'tracker');
  const { app, metrics, listen } = createRoleApp({
    service: 'tracker',
    logger,
    tracing,
    security,
  });
  const announces = new Counter({
    name: 'shoal_tracker_announces_total',
    help: 'Announces answered, by whether the answer named peers',
    labelNames: ['result'] as const,
    registers: [metrics],
  });
  new Gauge({
    name: 'shoal_tracker_swarms',
    help: 'Swarms with live peers',
    registers: [metrics],
    collect() {
      this.set(peers.size().swarms);
    },
  });
  new Gauge({
    name: 'shoal_tracker_peers',
    help: 'Live peers over all swarms',
    registers: [metrics],
    collect() {
      this.set(peers.size().peers);
    },
  });
  await app.register(
    trackerRoutes({
      announce,
      metainfo: (digest) => origins.metainfo(digest as Digest),
      announces,
      mode: security.mode,
      swarms: (limit) => ledger.list(limit),
      now: () => clock.now(),
    }),
  );
  const sweeper = setInterval(() => peers.sweep(), Math.max(1000, ttlMs / 2));
  sweeper.unref();
  let url: string;
  try {
    ({ url } = await listen({ host: config.listen.host, port: config.listen.port }));
  } catch (error) {
    clearInterval(sweeper);
    await origins.close();
    await tracing.shutdown();
    throw error;
  }
  if (advertiseUrl === '') advertiseUrl = url;
  logger.info({ url, advertiseUrl, origins: config.origins.urls }, 'tracker listening');
  return {
    url,
    advertiseUrl,
    close: async () => {
      clearInterval(sweeper);
      await app.close();
      await origins.close();
      await tracing.shutdown();
    },
  };
};

import type { FastifyPluginAsync } from 'fastify';
import { Type } from '@sinclair/typebox';
import { Counter, Gauge } from 'prom-client';
import type { Registry } from 'prom-client';
import type { Digest } from '../../../domain';
import { orThrow, parseDigest } from '../../../domain';
import { createBandwidth } from '../../../p2p/bandwidth';
import type { Metainfo } from '../../../p2p/metainfo';
import { infoHash as infoHashOf } from '../../../p2p/metainfo';
import type { Announcer, Swarm, SwarmHost } from '../../../p2p/swarm';
import { createSwarmHost, openFilePieceSource } from '../../../p2p/swarm';
import { createTrackerClient } from '../../tracker/client/trackerClient';
import type { Logger } from '../../shared/logger';
import type { SecurityMode } from '../../shared/security/authenticate';
import { requireService } from '../../shared/security/authenticate';
import type { ClientIdentity } from '../../shared/security/clientIdentity';
import type { SeederJoined } from '../client/seederClient';
import type { SeederConfig } from './config';
import { originSchedulerConfig } from './config';

const wildcard = new Set(['0.0.0.0', '::', '[::]', '']);

export type OriginSeeder = {
  readonly host: SwarmHost;
  /** Joins (or refreshes) the swarm of a blob held here, announcing to `tracker`. */
  readonly join: (digest: Digest, tracker: string) => Promise<SeederJoined>;
  /** The internal routes: `POST /internal/p2p/swarms/:digest`, `GET /internal/p2p`. */
  readonly routes: FastifyPluginAsync;
  readonly close: () => Promise<void>;
};

/**
 * The origin's seeder: a swarm host in origin mode. A tracker asks it to join a blob's swarm
 * (`POST /internal/p2p/swarms/:digest {tracker}`) when agents start fetching the blob and the
 * swarm has no origin; it then serves pieces from the stored blob file and announces to that
 * tracker until the swarm has had no connection for `seedIdleMs`. Its uploads follow the
 * origin policy of the scheduler: pieces sent least often first, and a repeat request for a
 * piece that agents already hold is answered BUSY once (they trade it among themselves).
 * Returns undefined when `p2p.port` is 0.
 */
export const startOriginSeeder = async (deps: {
  config: SeederConfig;
  /** The origin's HTTP listen host and advertised URL (for defaults). */
  listenHost: string;
  advertiseUrl: string;
  /** The blob's metainfo when the blob is on this origin's disk (`BLOB_UNKNOWN` otherwise). */
  metainfo: (digest: Digest) => Promise<Metainfo>;
  /** Path of a stored blob. */
  pathOf: (digest: Digest) => string;
  metrics: Registry;
  logger: Logger;
  /** The origin's identity when it announces (an announce as an origin needs one). */
  identity?: ClientIdentity;
  /** How strict the join route is: in required mode, trackers only. */
  mode?: SecurityMode;
}): Promise<OriginSeeder | undefined> => {
  const { config, logger } = deps;
  if (config.port === 0) return undefined;
  const listenHost = config.host === '' ? deps.listenHost : config.host;
  const advertiseHost =
    config.advertiseHost !== ''
      ? config.advertiseHost
      : wildcard.has(listenHost) && deps.advertiseUrl !== ''
        ? new URL(deps.advertiseUrl).hostname
        : listenHost;
  /** Digest and the tracker that last asked, by info hash (to rejoin on a late dial). */
  const known = new Map<string, { digest: Digest; tracker: string }>();
  const announcers = new Map<string, Announcer>();
  const announcerFor = (tracker: string): Announcer => {
    let announcer = announcers.get(tracker);
    if (announcer === undefined) {
      announcer = createTrackerClient([tracker], {
        timeoutMs: 5000,
        ...(deps.identity !== undefined && { identity: deps.identity }),
      });
      announcers.set(tracker, announcer);
    }
    return announcer;
  };
  /** The tracker a swarm announces to: the one that asked last (the swarm's current home). */
  const homes = new Map<string, string>();

  const ref: { host?: SwarmHost } = {};
  /** Joins in progress, by digest: concurrent asks share one (one file handle per swarm). */
  const opening = new Map<string, Promise<Swarm>>();
  const openSwarm = (digest: Digest, tracker: string): Promise<Swarm> => {
    let pending = opening.get(digest);
    if (pending === undefined) {
      pending = openSwarmNow(digest, tracker).finally(() => opening.delete(digest));
      opening.set(digest, pending);
    }
    return pending;
  };
  const openSwarmNow = async (digest: Digest, tracker: string): Promise<Swarm> => {
    const host = ref.host as SwarmHost;
    const metainfo = await deps.metainfo(digest);
    const infoHash = infoHashOf(metainfo);
    known.delete(infoHash);
    known.set(infoHash, { digest, tracker });
    if (known.size > 100_000) known.delete(known.keys().next().value as string);
    homes.set(infoHash, tracker);
    if (homes.size > 100_000) homes.delete(homes.keys().next().value as string);
    const open = host.get(infoHash);
    if (open !== undefined && !open.scheduler.closed) return open;
    const source = await openFilePieceSource(deps.pathOf(digest), metainfo);
    // The announcer follows the swarm's home tracker, which may change (failover).
    const announcer: Announcer = {
      announce: (a) => announcerFor(homes.get(infoHash) ?? tracker).announce(a),
    };
    const swarm = host.join(metainfo, source, {
      announcer,
      scheduler: originSchedulerConfig(config),
      onClose: (_swarm, reason) => {
        logger.debug({ digest, reason }, 'left a swarm');
        void source.close();
      },
    });
    logger.debug({ digest, infoHash, tracker }, 'joined a swarm');
    return swarm;
  };

  const host = await createSwarmHost({
    origin: true,
    listen: { host: listenHost, port: config.port },
    advertiseHost,
    bandwidth: createBandwidth(config.bandwidth),
    scheduler: originSchedulerConfig(config),
    logger: logger.child({ module: 'seeder' }),
    resolveUnknown: async (infoHash) => {
      const entry = known.get(infoHash);
      if (entry === undefined) return undefined;
      return openSwarm(entry.digest, homes.get(infoHash) ?? entry.tracker).catch(() => undefined);
    },
  });
  ref.host = host;

  const join = async (digest: Digest, tracker: string): Promise<SeederJoined> => {
    const swarm = await openSwarm(digest, tracker);
    return { infoHash: swarm.infoHash, peerId: host.peerId.toString('hex'), address: host.address };
  };

  const sent = new Counter({
    name: 'shoal_origin_p2p_sent_bytes_total',
    help: 'Piece bytes the seeder uploaded to agents',
    registers: [deps.metrics],
    collect() {
      this.reset();
      this.inc(host.totals().bytesUploaded);
    },
  });
  const busy = new Counter({
    name: 'shoal_origin_p2p_busy_total',
    help: 'Piece requests the seeder deflected (BUSY) because agents held the piece',
    registers: [deps.metrics],
    collect() {
      this.reset();
      this.inc(host.totals().busySent);
    },
  });
  new Gauge({
    name: 'shoal_origin_p2p_swarms',
    help: 'Swarms the seeder is in',
    registers: [deps.metrics],
    collect() {
      this.set(host.swarms().length);
    },
  });
  void sent;
  void busy;

  const routes: FastifyPluginAsync = async (app) => {
    app.post(
      '/internal/p2p/swarms/:digest',
      {
        // Only a tracker may send the origin to announce somewhere (else: any URL, on demand).
        onRequest: async (request) => requireService(request, deps.mode ?? 'open', ['tracker']),
        schema: {
          params: Type.Object({ digest: Type.String({ maxLength: 200 }) }),
          body: Type.Object({ tracker: Type.String({ minLength: 1, maxLength: 2000 }) }),
        },
      },
      async (request) => {
        const digest = orThrow(parseDigest((request.params as { digest: string }).digest));
        return join(digest, (request.body as { tracker: string }).tracker);
      },
    );
    app.get('/internal/p2p', async () => ({
      peerId: host.peerId.toString('hex'),
      address: host.address,
      swarms: host.swarms().map((s) => ({
        digest: s.digest,
        infoHash: s.infoHash,
        connections: s.scheduler.connectionCount,
        bytesUploaded: s.scheduler.stats.bytesUploaded,
      })),
      totals: host.totals(),
    }));
  };

  logger.info({ address: host.address }, 'origin seeder listening');
  return { host, join, routes, close: () => host.close() };
};

import { join } from 'node:path';
import { Gauge } from 'prom-client';
import type { BlobStore, Clock, Digest, EventLog, Position, ProjectionStore } from '../../domain';
import { ShoalError, ringMembers, ringStream, truncate } from '../../domain';
import { placementProjection } from '../../projections';
import { openDataDir } from '../shared/dataDir';
import { createRoleApp } from '../shared/roleApp';
import { observeEventLog, registerProjectionMetrics } from '../shared/logMetrics';
import { startTracing } from '../shared/tracing';
import type { Logger } from '../shared/logger';
import { createProjectionRunner } from '../shared/projectionRunner';
import { requireService } from '../shared/security/authenticate';
import type { RoleSecurity } from '../shared/security/roleSecurity';
import { openSecurity } from '../shared/security/roleSecurity';
import { createActivity } from './activity';
import type { BackendRoute } from './backendRouter';
import { createBackendRouter, watchBackends } from './backendRouter';
import { createBlobService } from './blobService';
import type { OriginClient } from './client/originClient';
import { createOriginClient } from './client/originClient';
import type { OriginConfig } from './config';
import type { OriginContext } from './context';
import { newEvent } from '../shared/events';
import { followCollections } from './collections';
import { dropHandler, eraseHandler } from './jobs/collectHandlers';
import { placeHandler, writeBackHandler } from './jobs/handlers';
import type { JobWorker } from './jobs/jobWorker';
import { createJobWorker } from './jobs/jobWorker';
import { createEvictor, parseWatermark } from './evictor';
import { createRingHealer } from './ringHealer';
import { createRingRelease } from './ringRelease';
import { createMemberLiveness } from './memberLiveness';
import { createKeyedLocks } from './keyedLocks';
import { createLocalOriginClient } from './localOriginClient';
import { createOriginMetrics } from './metrics';
import { createRingView } from './ringView';
import { startOriginSeeder } from './seeder/seeder';
import { originRoutes } from './server/routes';
import type { ContentObserver } from './store/contentStore';
import { createContentStore } from './store/contentStore';
import { openOriginDb } from './store/originDb';
import { createUploadSessions } from './uploadSessions';

export type RunningOrigin = {
  readonly id: string;
  /** `http://host:port` the origin listens on. */
  readonly url: string;
  /** The address recorded in `OriginJoined`: where other services reach it. */
  readonly advertiseUrl: string;
  /** `<dataDir>/origin-<id>`: its blobs, upload sessions and queue. */
  readonly directory: string;
  /**
   * This origin for a caller in the same process: the internal API without the HTTP hop
   * (pass it to `createBlobAccess`'s `connect`, as `shoal dev` may for its proxy).
   */
  readonly client: OriginClient;
  readonly runner: ReturnType<typeof createProjectionRunner>;
  /** Deletes expired upload sessions now (a timer does it every minute or so). */
  readonly sweepUploads: () => Promise<number>;
  /** Measures the cache against its watermarks now and evicts (a timer does it too). */
  readonly checkCache: () => Promise<void>;
  /** Stops serving and working; queued jobs and open sessions stay on disk for the next start. */
  readonly close: () => Promise<void>;
};

export type OriginDeps = {
  readonly config: OriginConfig;
  readonly logger: Logger;
  readonly clock: Clock;
  readonly log: EventLog;
  readonly store: ProjectionStore;
  /**
   * The default storage backend blobs are written back to (the composition root picks it):
   * repositories no route matches use it.
   */
  readonly backend: BlobStore;
  /** Namespace routes to other backends, first match wins (config `backends`). */
  readonly routes?: readonly BackendRoute[];
  readonly actor?: string;
  /** TLS, limits, authenticators, the identity it calls peers with; none: open, plain HTTP. */
  readonly security?: RoleSecurity;
};

const wildcardHosts = new Set(['0.0.0.0', '::', '[::]', '']);

/** How long a closing origin lets requests in flight finish before cutting them. */
const shutdownGraceMs = 10_000;

/**
 * Runs an origin: joins the ring (once; a restart with the same id and address appends
 * nothing, so placement never reshuffles), finishes what a crash interrupted (committed
 * uploads, queued write-backs and placements), and serves the internal blob API.
 * The only place that listens; the composition root picks the log, store and backend.
 */
export const startOrigin = async (deps: OriginDeps): Promise<RunningOrigin> => {
  const { config, clock, store, backend } = deps;
  const security = deps.security ?? openSecurity;
  const logger = deps.logger.child({ origin: config.id });
  const selfId = config.id;
  const listensEverywhere = wildcardHosts.has(config.listen.host);
  if (listensEverywhere && config.advertiseUrl === '') {
    throw new ShoalError(
      'CONFIG_INVALID',
      `origin listens on ${config.listen.host}: set advertiseUrl to the URL others reach it at`,
    );
  }
  const directory = openDataDir(config.dataDir, { create: true }).sub(`origin-${selfId}`);
  const db = openOriginDb(join(directory, 'origin.db'));
  const cleanups: Array<() => Promise<void> | void> = [() => void db.close()];
  let closing: Promise<void> | undefined;
  const cleanup = () =>
    (closing ??= (async () => {
      for (const step of [...cleanups].reverse()) await step();
    })());

  try {
    const tracing = startTracing(config.tracing, 'origin');
    cleanups.push(() => tracing.shutdown());
    const {
      app,
      metrics: registry,
      listen,
    } = createRoleApp({
      service: 'origin',
      logger,
      tracing,
      notReady: () => (joined ? health.problem() : 'joining the ring'),
      security,
    });
    // The whole internal API is for the cluster's services: the proxy, trackers, other origins.
    app.addHook('onRequest', async (request) => {
      if (request.url.startsWith('/internal/')) requireService(request, security.mode);
    });
    const log = observeEventLog(deps.log, registry);
    const runner = createProjectionRunner({
      log,
      store,
      projections: [placementProjection],
      logger: logger.child({ module: 'projections' }),
    });
    runner.start();
    cleanups.push(() => runner.stop());
    registerProjectionMetrics(registry, { runner, log: deps.log, clock });

    const peers = new Map<string, OriginClient>();
    cleanups.push(async () => {
      await Promise.all([...peers.values()].map((p) => p.close()));
    });
    // The worker needs the context and the context wakes the worker: tie them late.
    const workerRef: { current?: JobWorker } = {};
    let joined = false;
    let closed = false;

    const backends = createBackendRouter(
      { store: backend, prefix: config.backend.prefix },
      deps.routes ?? [],
    );
    const health = watchBackends(backends.all, logger);
    cleanups.push(() => health.stop());
    const metrics = createOriginMetrics(registry, {
      db: () => (closed ? undefined : db),
      clock,
      directory,
    });
    const writer = { clock, cluster: config.cluster, actor: deps.actor ?? `origin/${selfId}` };

    const high = parseWatermark(config.cache.highWatermark, 'cache.highWatermark');
    const low = parseWatermark(config.cache.lowWatermark, 'cache.lowWatermark');
    // The content store tells the evictor what it stores, reads and removes (tied late).
    const cacheIndex: { current?: ContentObserver } = {};
    const ctx: OriginContext = {
      selfId,
      config,
      clock,
      logger,
      log,
      writer,
      backends,
      db,
      content: createContentStore(directory, {
        stored: (digest, size) => cacheIndex.current?.stored?.(digest, size),
        read: (digest) => cacheIndex.current?.read?.(digest),
        removed: (digest) => cacheIndex.current?.removed?.(digest),
      }),
      blobLocks: createKeyedLocks(),
      uploadsDir: join(directory, 'uploads'),
      ring: createRingView({ store, selfId, replicas: config.replicas }),
      peer: (address) => {
        let client = peers.get(address);
        if (client === undefined) {
          client = createOriginClient(address, {
            timeoutMs: config.peers.timeoutMs,
            identity: security.identity,
            caller: 'origin',
          });
          peers.set(address, client);
        }
        return client;
      },
      metrics,
      wakeJobs: () => workerRef.current?.wake(),
      catchUpRing: async () => {
        const head = await log.head();
        await runner.waitFor(head, config.readYourWrites.timeoutMs).catch((error: unknown) => {
          logger.warn({ err: error }, 'placement projection is behind the log');
        });
      },
    };
    const activity = createActivity(clock, config.writeBack.quietMs);
    const blobs = createBlobService(ctx);
    const uploads = createUploadSessions(ctx, blobs);

    const evictor = createEvictor(ctx, { high, low, intervalMs: config.cache.checkIntervalMs });
    cacheIndex.current = evictor.observer;
    cleanups.push(() => evictor.stop());
    new Gauge({
      name: 'shoal_origin_cache_bytes',
      help: 'Bytes of blobs on local disk',
      registers: [registry],
      collect() {
        this.set(evictor.stats().used);
      },
    });

    // Finish what a crash interrupted before taking new work.
    await ctx.content.sweepTemp();
    await ctx.catchUpRing();
    const recovered = await uploads.recover();
    if (recovered.finished + recovered.dropped > 0) logger.info(recovered, 'recovered uploads');

    const jobs = createJobWorker({
      db,
      handlers: {
        'write-back': writeBackHandler(ctx),
        place: placeHandler(ctx),
        drop: dropHandler(ctx),
        erase: eraseHandler(ctx),
      },
      clock,
      logger: logger.child({ module: 'jobs' }),
      concurrency: config.writeBack.concurrency,
      minBackoffMs: config.writeBack.minBackoffMs,
      maxBackoffMs: config.writeBack.maxBackoffMs,
      startDelayMs: config.writeBack.startDelayMs,
      holdBack: {
        kinds: ['write-back'],
        delay: () => activity.untilQuiet(),
        maxHoldMs: config.writeBack.maxDeferMs,
      },
      onOutcome: (kind, outcome) => metrics.jobs.inc({ kind, outcome }),
    });
    workerRef.current = jobs;
    cleanups.push(() => jobs.stop());

    // While closing, answers end their connection: a keep-alive connection that becomes idle
    // after close began is not reaped by Node and would hold the close for its timeout.
    let closingHttp = false;
    app.addHook('onSend', async (_request, reply, payload) => {
      if (closingHttp) reply.header('connection', 'close');
      return payload;
    });
    await app.register(
      originRoutes({
        uploads,
        blobs,
        ring: ctx.ring,
        activity,
        onBytesOut: (n, caller) => {
          metrics.bytesOut.inc({ target: 'read' }, n);
          metrics.egress(caller, n);
        },
      }),
    );
    // The P2P seeder (`p2p.port`; none when 0): origins join swarms of blobs they hold.
    const seeder = await startOriginSeeder({
      config: config.p2p,
      listenHost: config.listen.host,
      advertiseUrl: config.advertiseUrl,
      metainfo: (digest) => blobs.metainfo(digest, { local: true }),
      pathOf: (digest) => ctx.content.pathOf(digest),
      metrics: registry,
      logger,
      identity: security.identity,
      mode: security.mode,
    });
    if (seeder !== undefined) {
      metrics.agentEgressFrom(() => seeder.host.totals().bytesUploaded);
      cleanups.push(() => seeder.close());
      await app.register(seeder.routes);
    }
    const { url } = await listen({ host: config.listen.host, port: config.listen.port });
    cleanups.push(async () => {
      closingHttp = true;
      // Requests in flight may finish (uploads resume anyway if they are cut); connections
      // that turn idle are closed as they do, and whatever is left after the grace period.
      const reap = setInterval(() => app.server.closeIdleConnections(), 100);
      const force = setTimeout(() => app.server.closeAllConnections(), shutdownGraceMs);
      try {
        await app.close();
      } finally {
        clearInterval(reap);
        clearTimeout(force);
      }
    });
    const advertiseUrl = config.advertiseUrl === '' ? url : config.advertiseUrl.replace(/\/+$/, '');

    const client = createLocalOriginClient({
      url,
      uploads,
      blobs,
      ring: ctx.ring,
      activity,
      onBytesOut: (n) => {
        metrics.bytesOut.inc({ target: 'read' }, n);
        metrics.egress('client', n);
      },
    });

    const position = await joinRing(ctx, advertiseUrl);
    await runner.waitFor(position, Math.max(config.readYourWrites.timeoutMs, 30_000));
    joined = true;
    jobs.start();
    await evictor.start();
    const collections = followCollections(ctx);
    collections.start();
    cleanups.push(() => collections.stop());
    const healer = createRingHealer({
      ring: ctx.ring,
      selfId: ctx.selfId,
      fill: (digest) => blobs.fill(digest as Digest),
      release: createRingRelease(ctx),
      liveness: createMemberLiveness({
        ring: ctx.ring,
        selfId: ctx.selfId,
        probe: (address) => ctx.peer(address).ring(),
        lostAfterMs: config.healing.lostAfterMs,
      }),
      logger: logger.child({ module: 'healing' }),
      registry,
      intervalMs: config.healing.intervalMs,
      concurrency: config.healing.concurrency,
    });
    healer.start();
    cleanups.push(() => healer.stop());

    const sweepEvery = Math.min(60_000, Math.max(1000, config.uploads.expireAfterMs / 4));
    const sweeper = setInterval(() => {
      uploads.sweep().catch((error: unknown) => logger.warn({ err: error }, 'sweep failed'));
    }, sweepEvery);
    sweeper.unref();
    cleanups.push(() => clearInterval(sweeper));
    cleanups.push(() => {
      closed = true;
    });

    logger.info(
      { url, advertiseUrl, directory, backends: backends.all.map((b) => b.name) },
      'origin listening',
    );
    return {
      id: selfId,
      url,
      advertiseUrl,
      directory,
      client,
      runner,
      sweepUploads: () => uploads.sweep(),
      checkCache: () => evictor.check(),
      close: cleanup,
    };
  } catch (error) {
    await cleanup().catch(() => undefined);
    throw error;
  }
};

/**
 * Appends `OriginJoined` unless the ring stream already has this origin as a member at this
 * address. Membership is by id, so rejoining at a new address moves no blob.
 */
const joinRing = async (ctx: OriginContext, address: string): Promise<Position> => {
  const current = ringMembers(await ctx.log.readStream(ringStream)).find(
    (m) => m.id === ctx.selfId,
  );
  if (current?.address === address) return current.position;
  const position = await ctx.log.append([
    newEvent(ctx.writer, 'OriginJoined', { id: ctx.selfId, address }),
  ]);
  ctx.logger.info({ address, position }, 'joined the ring');
  return position;
};

/**
 * Appends `OriginLeft`: the origin's blobs get new owners, which fill them from the copies
 * left (ring healing; a read fills one sooner). Fails with
 * `NAME_UNKNOWN` for an id that is not on the ring, and refuses to take the last member off
 * (no blob could be stored or served) unless `force`. Compare-and-swap on the ring stream, so
 * two concurrent leaves cannot empty the ring between them.
 */
export const leaveRing = async (deps: {
  log: EventLog;
  clock: Clock;
  cluster: string;
  id: string;
  actor?: string;
  force?: boolean;
}): Promise<Position> => {
  const events = await deps.log.readStream(ringStream);
  const members = ringMembers(events);
  if (!members.some((m) => m.id === deps.id)) {
    throw new ShoalError(
      'NAME_UNKNOWN',
      `origin "${truncate(deps.id)}" is not on the ring (members: ${
        members.map((m) => m.id).join(', ') || 'none'
      }; see \`shoal origin ring\`)`,
      { detail: { id: truncate(deps.id) } },
    );
  }
  if (members.length === 1 && deps.force !== true) {
    throw new ShoalError(
      'PARAMETER_INVALID',
      `origin ${deps.id} is the only origin on the ring: without it no blob can be stored or ` +
        'served, and every push and pull fails. Start another origin first (it joins the ' +
        'ring), or pass --force to empty the ring anyway',
    );
  }
  const last = events[events.length - 1];
  return deps.log.append(
    [
      newEvent(
        { clock: deps.clock, cluster: deps.cluster, actor: deps.actor ?? 'cli' },
        'OriginLeft',
        { id: deps.id },
      ),
    ],
    { expectedVersion: last === undefined ? 'no-stream' : last.streamVersion },
  );
};

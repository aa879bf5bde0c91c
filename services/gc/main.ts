import type { FastifyInstance } from 'fastify';
import { Counter, Gauge } from 'prom-client';
import type { Registry } from 'prom-client';
import type { Clock, EventLog, Position, Projection, ProjectionStore } from '../../domain';
import { placementProjection, policiesProjection, referencesProjection } from '../../projections';
import type { Logger } from '../shared/logger';
import type { GcApi, GcReport, GcRunRequest } from './client/gcApi';
import type { GcConfig } from './config';
import type { GcProgress } from './collector';
import { createCollector } from './collector';
import { gcRoutes } from './server/routes';

/** The projections a GC run decides on. */
export const gcProjections: readonly Projection[] = [
  referencesProjection as Projection,
  policiesProjection as Projection,
  placementProjection as Projection,
];

/**
 * GC over a log and a projection store whose `gcProjections` `sync` brings up to the log's
 * head: the CLI's `shoal gc run` on a data directory, and the scheduled runs in build-index.
 * Runs in one process never overlap (a second waits for the first); runs in two processes
 * may, safely (each removal is a compare-and-swap), only wastefully.
 */
export const createGcService = (deps: {
  config: Pick<GcConfig, 'graceMs' | 'batchSize'>;
  cluster: string;
  actor: string;
  log: EventLog;
  store: ProjectionStore;
  clock: Clock;
  sync: () => Promise<Position>;
  logger?: Logger;
  onProgress?: (progress: GcProgress) => void;
  onReport?: (report: GcReport) => void;
}): GcApi => {
  const collector = createCollector({
    log: deps.log,
    store: deps.store,
    writer: { clock: deps.clock, cluster: deps.cluster, actor: deps.actor },
    clock: deps.clock,
    sync: deps.sync,
    ...(deps.logger !== undefined && { logger: deps.logger }),
  });
  let running: Promise<unknown> = Promise.resolve();
  return {
    run: (request: GcRunRequest) => {
      const next = running.then(() =>
        collector.run({
          graceMs: request.graceMs ?? deps.config.graceMs,
          batchSize: deps.config.batchSize,
          dryRun: request.dryRun === true,
          ...(deps.onProgress !== undefined && { onProgress: deps.onProgress }),
        }),
      );
      running = next.catch(() => undefined);
      return next.then((report) => {
        deps.onReport?.(report);
        return report;
      });
    },
  };
};

/** What GC is given by the role it is mounted in (build-index). */
export type GcHost = {
  readonly app: FastifyInstance;
  readonly metrics: Registry;
  readonly runner: { waitFor(position: Position, timeoutMs: number): Promise<void> };
};

/**
 * GC as a part of build-index (mounted by the composition root): `POST /v1/gc/runs`, metrics,
 * and a run every `intervalMs` when enabled.
 */
export const createGcComponent = (deps: {
  config: GcConfig;
  cluster: string;
  logger: Logger;
  clock: Clock;
  log: EventLog;
  store: ProjectionStore;
  actor: string;
  /** How long a run waits for the projections to reach the log's head. */
  syncTimeoutMs: number;
}) => ({
  projections: gcProjections,
  async mount(host: GcHost) {
    const { config, log } = deps;
    const logger = deps.logger.child({ module: 'gc' });
    let last: GcReport | undefined;
    const runs = new Counter({
      name: 'shoal_gc_runs_total',
      help: 'GC runs by outcome (done, failed)',
      labelNames: ['outcome'] as const,
      registers: [host.metrics],
    });
    const removed = new Counter({
      name: 'shoal_gc_removed_total',
      help: 'What GC removed: tags, manifests, blobs, links, bytes',
      labelNames: ['kind'] as const,
      registers: [host.metrics],
    });
    new Gauge({
      name: 'shoal_gc_last_run_seconds',
      help: 'Duration of the last GC run',
      registers: [host.metrics],
      collect() {
        this.set((last?.ms ?? 0) / 1000);
      },
    });
    const gc = createGcService({
      config,
      cluster: deps.cluster,
      actor: deps.actor,
      log,
      store: deps.store,
      clock: deps.clock,
      logger,
      sync: async () => {
        const head = await log.head();
        await host.runner.waitFor(head, deps.syncTimeoutMs);
        return head;
      },
      onReport: (report) => {
        if (report.dryRun) return;
        last = report;
        for (const [kind, n] of Object.entries(report.removed)) removed.inc({ kind }, n);
      },
    });
    await host.app.register(gcRoutes(gc, () => last));
    let timer: NodeJS.Timeout | undefined;
    let current: Promise<unknown> | undefined;
    const tick = () => {
      current = gc
        .run({})
        .then(
          () => runs.inc({ outcome: 'done' }),
          (error: unknown) => {
            runs.inc({ outcome: 'failed' });
            logger.error({ err: error }, 'scheduled gc run failed');
          },
        )
        .finally(() => {
          current = undefined;
        });
    };
    return {
      start: () => {
        if (!config.enabled) return;
        timer = setInterval(tick, config.intervalMs);
        timer.unref();
      },
      close: async () => {
        if (timer !== undefined) clearInterval(timer);
        await current;
      },
    };
  },
});

export type { GcProgress } from './collector';
export type { PolicyService } from './policies';
export { createPolicyService } from './policies';

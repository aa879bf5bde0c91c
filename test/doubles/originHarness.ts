import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { filter, firstValueFrom, timeout } from 'rxjs';
import type { BlobStore, Clock, EventLog, ProjectionStore, RecordedEvent } from '../../domain';
import { createFilesystemBlobStore } from '../../adapters/blobstore/filesystem';
import { createMemoryEventLog } from '../../adapters/eventlog/memory/memoryEventLog';
import { createMemoryProjectionStore } from '../../adapters/projection-store/memory/memoryProjectionStore';
import { systemClock } from '../../services/shared/clock';
import { validateConfig } from '../../services/shared/config';
import { openDataDir } from '../../services/shared/dataDir';
import { silentLogger } from '../../services/shared/logger';
import type { BackendRoute } from '../../services/origin/backendRouter';
import type { OriginConfig } from '../../services/origin/config';
import { OriginConfigSchema } from '../../services/origin/config';
import type { RunningOrigin } from '../../services/origin/main';
import { startOrigin } from '../../services/origin/main';

type DeepPartial<T> = { [K in keyof T]?: T[K] extends object ? DeepPartial<T[K]> : T[K] };

/**
 * Origins on a fresh temporary data directory sharing one in-memory log (as origin processes
 * share a cluster's log) and a filesystem backend; each origin gets its own projection store.
 * Restarting an origin with the same id reuses its directory, queue and sessions.
 */
export const createOriginHarness = () => {
  const dir = mkdtempSync(join(tmpdir(), 'shoal-origin-'));
  openDataDir(dir, { create: true });
  const log: EventLog = createMemoryEventLog();
  const backend = createFilesystemBlobStore({ root: join(dir, 'backend'), fsync: false });
  const running = new Set<RunningOrigin>();
  const stores: ProjectionStore[] = [];

  const configFor = (overrides: DeepPartial<OriginConfig> = {}): OriginConfig =>
    validateConfig(OriginConfigSchema, {
      dataDir: dir,
      listen: { port: 0 },
      ...overrides,
      // Write-back at once: tests that need the quiet period ask for it.
      writeBack: { minBackoffMs: 20, maxBackoffMs: 200, quietMs: 0, ...overrides.writeBack },
      peers: { timeoutMs: 10_000, ...overrides.peers },
    });

  return {
    dir,
    log,
    backend,

    start: async (
      overrides: DeepPartial<OriginConfig> = {},
      options: { backend?: BlobStore; routes?: readonly BackendRoute[]; clock?: Clock } = {},
    ): Promise<RunningOrigin> => {
      const store = createMemoryProjectionStore();
      stores.push(store);
      const origin = await startOrigin({
        config: configFor(overrides),
        logger: silentLogger(),
        clock: options.clock ?? systemClock,
        log,
        store,
        backend: options.backend ?? backend,
        ...(options.routes !== undefined && { routes: options.routes }),
      });
      running.add(origin);
      const close = origin.close;
      return {
        ...origin,
        close: async () => {
          running.delete(origin);
          await close();
        },
      };
    },

    /** Resolves with the first event, past or future, that matches. */
    waitForEvent: (match: (event: RecordedEvent) => boolean, ms = 10_000): Promise<RecordedEvent> =>
      firstValueFrom(log.subscribe(1).pipe(filter(match), timeout(ms))),

    events: async (): Promise<RecordedEvent[]> => {
      const out: RecordedEvent[] = [];
      for await (const event of log.read(1)) out.push(event);
      return out;
    },

    cleanup: async () => {
      for (const origin of [...running]) await origin.close();
      for (const store of stores) await store.close();
      await log.close();
      rmSync(dir, { recursive: true, force: true });
    },
  };
};

export type OriginHarness = ReturnType<typeof createOriginHarness>;

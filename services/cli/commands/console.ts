import { join } from 'node:path';
import type { Clock, EventLog } from '../../../domain';
import { openSqliteProjectionStore } from '../../../adapters/projection-store/sqlite/sqliteProjectionStore';
import type { ConsoleConfig } from '../../console/config';
import { ConsoleConfigSchema } from '../../console/config';
import { startConsole } from '../../console/main';
import { projectionStoreOptions } from '../compose';
import { openDataDir } from '../../shared/dataDir';
import type { Logger } from '../../shared/logger';
import type { RoleSecurity } from '../../shared/security/roleSecurity';

/**
 * The console on its own projection store (`<dataDir>/console/projections.db`): it keeps
 * every projection itself, so it never shares a store, or contends, with the roles it shows.
 */
export const startConsoleRole = async (deps: {
  config: ConsoleConfig;
  logger: Logger;
  clock: Clock;
  log: EventLog;
  security?: RoleSecurity;
}): Promise<{ url: string; close: () => Promise<void> }> => {
  const dir = openDataDir(deps.config.dataDir, { create: true }).sub('console');
  const store = openSqliteProjectionStore(join(dir, 'projections.db'), projectionStoreOptions);
  const running = await startConsole({ ...deps, store }).catch(async (error: unknown) => {
    await store.close();
    throw error;
  });
  return {
    url: running.url,
    close: async () => {
      await running.close();
      await store.close();
    },
  };
};

/** `shoal console`: the web console alone, on the data directory's log. */
export const consoleRole = {
  name: 'console' as const,
  description:
    'run the web console: read-only pages of repositories, tag history, manifests, ' +
    'replication, placement, swarms and the event log, live (never writes to the log)',
  schema: ConsoleConfigSchema,
  start: (deps: {
    config: ConsoleConfig;
    logger: Logger;
    clock: Clock;
    log: EventLog;
    security: RoleSecurity;
  }) => startConsoleRole(deps),
};

import { hostname } from 'node:os';
import type { Command } from 'commander';
import { Type } from '@sinclair/typebox';
import { ShoalError } from '../../../domain';
import { loadConfig, validateConfig } from '../../shared/config';
import type { LogConfig } from '../../shared/logConfig';
import { LogConfigSchema } from '../../shared/logConfig';
import { roleConfig } from '../../shared/roleConfig';
import type { RoleSecurity, RoleSecurityConfig } from '../../shared/security/roleSecurity';
import { createRoleSecurity } from '../../shared/security/roleSecurity';
import type { ServiceRole } from '../../shared/security/subject';
import type { LocalState } from '../compose';
import { openLocalState } from '../compose';
import { openDataDir } from '../../shared/dataDir';
import type { DataDirClaim, DataDirLock } from '../../shared/dataDirLock';
import { lockDataDir } from '../../shared/dataDirLock';
import type { LogFormat, Logger, LogLevel } from '../../shared/logger';
import { createLogger, logLevels } from '../../shared/logger';
import { explainListenError } from '../listenErrors';
import { handleOutputError, note, onClosedPipe } from '../output';

export type GlobalOptions = { dataDir?: string; config?: string };

export const defaultDataDir = './.shoal';

/** Settings of commands that work on the data directory directly (no service involved). */
export const defaultLogConfig = {
  cluster: process.env.SHOAL_CLUSTER ?? 'default',
  log: validateConfig(LogConfigSchema, {}),
};

/**
 * What a command that opens the log directly needs from a role's YAML file: the log (which
 * adapter, which topic), the data directory and the cluster name. Any role's file (proxy,
 * origin, build-index) has these keys; the role's others are its own (the role checks them).
 */
export const StateConfigSchema = Type.Object(
  {
    cluster: roleConfig.cluster(),
    dataDir: roleConfig.dataDir('log, projections'),
    log: roleConfig.log(),
  },
  { additionalProperties: true },
);

/** Every command takes `--data-dir` (also `SHOAL_DATA_DIR`). */
export const addDataDirOption = (command: Command): Command =>
  command.option(
    '--data-dir <dir>',
    `data directory (default: $SHOAL_DATA_DIR or ${defaultDataDir})`,
  );

/**
 * `--config FILE`: take the log (and data directory) from a role's YAML config, so that
 * commands reach the log a service uses — a Kafka topic, EventStoreDB — not only the data
 * directory's SQLite file. `--data-dir` still wins over the file's `dataDir`.
 */
export const addConfigOption = (command: Command): Command =>
  command.option(
    '--config <file>',
    "a role's YAML config: use its log (log.adapter, log.kafka…) and dataDir",
  );

export const dataDirOf = (options: GlobalOptions): string =>
  options.dataDir ?? process.env.SHOAL_DATA_DIR ?? defaultDataDir;

/** The data directory, log and cluster a command uses: from `--config`, or the defaults. */
export const stateConfigOf = (
  options: GlobalOptions,
): { dataDir: string; log: LogConfig; cluster: string } => {
  if (options.config === undefined) {
    return { dataDir: dataDirOf(options), ...defaultLogConfig };
  }
  return loadConfig(StateConfigSchema, {
    file: options.config,
    overrides: { ...(options.dataDir !== undefined && { dataDir: options.dataDir }) },
  });
};

/** Opens the data directory's log and projections for one command, and closes them after. */
export const withState = async <T>(
  options: GlobalOptions,
  create: boolean,
  fn: (state: LocalState) => Promise<T>,
): Promise<T> => {
  const config = stateConfigOf(options);
  const state = await openLocalState({ dataDir: config.dataDir, log: config.log, create });
  try {
    return await fn(state);
  } finally {
    await state.close();
  }
};

/** A `--port` value: an integer 0–65535. */
export const parsePort = (text: string): number => {
  const port = Number(text);
  if (!Number.isInteger(port) || port < 0 || port > 65535) {
    throw new ShoalError('CONFIG_INVALID', `invalid port "${text}"`);
  }
  return port;
};

/**
 * Keeps a service running until SIGINT/SIGTERM (or until `until` resolves with a reason),
 * then closes it.
 */
export const runUntilSignal = (
  close: () => Promise<void>,
  until?: Promise<string>,
): Promise<void> =>
  new Promise((resolve) => {
    let stopped = false;
    const stop = (reason?: string) => {
      if (stopped) return;
      stopped = true;
      process.off('SIGINT', onSignal);
      process.off('SIGTERM', onSignal);
      offClosedPipe();
      note(reason === undefined ? 'shutting down…' : `${reason}: shutting down…`);
      close().then(resolve, (error: unknown) => {
        note(`error while shutting down: ${String(error)}`);
        process.exitCode = 1;
        resolve();
      });
    };
    const onSignal = () => stop();
    process.on('SIGINT', onSignal);
    process.on('SIGTERM', onSignal);
    // `shoal dev | head`: the reader left; stop as a signal would.
    const offClosedPipe = onClosedPipe(() => stop('output closed'));
    void until?.then(stop);
  });

/**
 * A role's security from its config (failing fast on bad files or a required mode without
 * identities), with its TLS files re-read on SIGHUP. `dispose` stops both.
 */
export const roleSecurityOf = (
  config: RoleSecurityConfig,
  self: { role: ServiceRole; name?: string },
  logger: Logger,
): { security: RoleSecurity; dispose: () => void } => {
  const security = createRoleSecurity(
    config,
    { role: self.role, name: self.name ?? hostname() },
    logger,
  );
  const onHangup = () => {
    logger.info('SIGHUP: reloading TLS files');
    security.reload();
  };
  process.on('SIGHUP', onHangup);
  return {
    security,
    dispose: () => {
      process.off('SIGHUP', onHangup);
      security.close();
    },
  };
};
/**
 * Where a service's logs go and how they look: readable lines on a terminal, JSON otherwise
 * (`SHOAL_LOG_FORMAT=json|pretty` decides instead). A closed pipe stops the service quietly.
 */
export const serviceLogger = (options: {
  level: LogLevel;
  name: string;
  sync?: boolean;
}): Logger => {
  const chosen = process.env.SHOAL_LOG_FORMAT;
  const format: LogFormat =
    chosen === 'json' || chosen === 'pretty' ? chosen : process.stdout.isTTY ? 'pretty' : 'json';
  return createLogger({ ...options, format, onError: handleOutputError });
};

/** A `--log-level` value, or `SHOAL_LOG_LEVEL`'s: one of pino's levels. */
export const parseLogLevel = (text: string, from = '--log-level'): LogLevel => {
  if ((logLevels as readonly string[]).includes(text)) return text as LogLevel;
  throw new ShoalError('CONFIG_INVALID', `${from} "${text}" is not one of ${logLevels.join(', ')}`);
};

/**
 * Opens (creating it if need be) the data directory a service runs on and claims it for this
 * process's life: `DATA_DIR_IN_USE`, naming the holder, when `shoal dev` or a role process
 * with the same identity runs on it already.
 */
export const claimDataDir = (
  path: string,
  claim: DataDirClaim,
  command: string,
): { root: string; lock: DataDirLock } => {
  const { root } = openDataDir(path, { create: true });
  return { root, lock: lockDataDir(root, claim, command) };
};

/**
 * A role process's failure to listen, explained: which of its ports (`listen.port`, or its peer
 * port `p2p.port`) and how to choose another.
 */
export const explainRoleListenError = (
  error: unknown,
  role: string,
  config: { listen: { port: number }; p2p?: { port: number } },
  peer?: { what: string; flag?: string },
): unknown =>
  explainListenError(
    error,
    (port) =>
      port === config.listen.port
        ? `${role} (listen.port)`
        : peer !== undefined && port === config.p2p?.port
          ? `${role} ${peer.what} (p2p.port)`
          : undefined,
    () =>
      peer === undefined
        ? 'Choose another port: --port, listen.port in the config file, or SHOAL_LISTEN_PORT.'
        : `Choose another port: --port or listen.port, and ${peer.flag ?? ''}p2p.port for ` +
          `the ${peer.what} (or SHOAL_LISTEN_PORT, SHOAL_P2P_PORT).`,
  );

import type { Command } from 'commander';
import { validateConfig } from '../../shared/config';
import { LogConfigSchema } from '../../shared/logConfig';
import type { LocalState } from '../compose';
import { openLocalState } from '../compose';

export type GlobalOptions = { dataDir?: string };

export const defaultDataDir = './.shoal';

/** Settings of commands that work on the data directory directly (no service involved). */
export const defaultLogConfig = {
  cluster: process.env.SHOAL_CLUSTER ?? 'default',
  log: validateConfig(LogConfigSchema, {}),
};

/** Every command takes `--data-dir` (also `SHOAL_DATA_DIR`). */
export const addDataDirOption = (command: Command): Command =>
  command.option(
    '--data-dir <dir>',
    `data directory (default: $SHOAL_DATA_DIR or ${defaultDataDir})`,
  );

export const dataDirOf = (options: GlobalOptions): string =>
  options.dataDir ?? process.env.SHOAL_DATA_DIR ?? defaultDataDir;

/** Opens the data directory's log and projections for one command, and closes them after. */
export const withState = async <T>(
  options: GlobalOptions,
  create: boolean,
  fn: (state: LocalState) => Promise<T>,
): Promise<T> => {
  const state = await openLocalState({
    dataDir: dataDirOf(options),
    log: defaultLogConfig.log,
    create,
  });
  try {
    return await fn(state);
  } finally {
    await state.close();
  }
};

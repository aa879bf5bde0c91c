import { existsSync, mkdirSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { ShoalError } from '../../domain';

/** The marker that makes a directory Shoal's. Nothing is written to a directory without it. */
export const markerFile = 'shoal.json';
export const dataDirFormat = 1;

export type DataDir = {
  readonly root: string;
  readonly logPath: string;
  readonly projectionsPath: string;
  readonly endpointsPath: string;
  /** A sub-directory for one role's own files (origin blobs, upload sessions, …). */
  readonly sub: (name: string) => string;
};

const layout = (root: string): DataDir => ({
  root,
  logPath: join(root, 'log.db'),
  projectionsPath: join(root, 'projections.db'),
  endpointsPath: join(root, 'endpoints.json'),
  sub: (name) => {
    const dir = join(root, name);
    mkdirSync(dir, { recursive: true });
    return dir;
  },
});

/**
 * Opens a data directory. A missing or empty directory is initialised (with `create`); a
 * directory holding anything but Shoal's marker is refused, so a wrong `--data-dir` can
 * never damage someone's files.
 */
export const openDataDir = (dir: string, options: { create: boolean }): DataDir => {
  const root = resolve(dir);
  const marker = join(root, markerFile);
  if (existsSync(marker)) {
    let parsed: unknown;
    try {
      parsed = JSON.parse(readFileSync(marker, 'utf8'));
    } catch {
      throw new ShoalError(
        'DATA_DIR_INVALID',
        `${marker} is not valid JSON: refusing to use ${root}`,
      );
    }
    const format = (parsed as { format?: unknown } | null)?.format;
    if (format !== dataDirFormat) {
      throw new ShoalError(
        'DATA_DIR_INVALID',
        `${root} has data format ${String(format)}; this Shoal reads format ${dataDirFormat}`,
      );
    }
    return layout(root);
  }
  if (existsSync(root)) {
    if (!statSync(root).isDirectory()) {
      throw new ShoalError('DATA_DIR_INVALID', `${root} is not a directory`);
    }
    if (readdirSync(root).length > 0) {
      throw new ShoalError(
        'DATA_DIR_INVALID',
        `${root} is not empty and has no ${markerFile}: it is not a Shoal data directory ` +
          '(refusing to write to it)',
      );
    }
  }
  if (!options.create) {
    throw new ShoalError(
      'DATA_DIR_INVALID',
      `${root} is not a Shoal data directory (run a service or a write command to create one)`,
    );
  }
  mkdirSync(root, { recursive: true });
  writeFileSync(marker, `${JSON.stringify({ format: dataDirFormat }, null, 2)}\n`, { flag: 'wx' });
  return layout(root);
};

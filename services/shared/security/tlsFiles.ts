import type { Stats } from 'node:fs';
import { readFileSync, unwatchFile, watchFile } from 'node:fs';
import { createSecureContext } from 'node:tls';
import { ShoalError } from '../../../domain';
import type { Logger } from '../logger';

/** PEM bytes of a certificate chain, its key and a CA bundle; any may be absent. */
export type TlsMaterial = {
  readonly cert?: Buffer;
  readonly key?: Buffer;
  readonly ca?: Buffer;
};

export type TlsFiles = {
  readonly certFile?: string;
  readonly keyFile?: string;
  readonly caFile?: string;
};

/**
 * TLS files that are read again when they change on disk (polled) or when `reload` is called
 * (on SIGHUP). A set that does not load — a file missing, a key that does not match its
 * certificate, half of a pair replaced — keeps the last good one and is logged; the next
 * change tries again. Listeners hear of every good set after the first.
 */
export type ReloadableTls = {
  readonly current: () => TlsMaterial;
  /** Reads the files now; true when a new set was taken. */
  readonly reload: () => boolean;
  readonly onChange: (listener: (material: TlsMaterial) => void) => void;
  /** Stops watching the files. */
  readonly close: () => void;
};

/** Reads and checks a set of TLS files: a certificate and its key must match. */
export const readTlsFiles = (files: TlsFiles): TlsMaterial => {
  const read = (what: string, path: string | undefined) => {
    if (path === undefined || path === '') return undefined;
    try {
      return readFileSync(path);
    } catch (error) {
      throw new ShoalError(
        'CONFIG_INVALID',
        `cannot read ${what} ${path}: ${(error as Error).message}`,
      );
    }
  };
  const material = {
    ...withValue('cert', read('certificate', files.certFile)),
    ...withValue('key', read('key', files.keyFile)),
    ...withValue('ca', read('CA bundle', files.caFile)),
  };
  if ((material.cert === undefined) !== (material.key === undefined)) {
    throw new ShoalError(
      'CONFIG_INVALID',
      'a certificate needs its key, and a key its certificate',
    );
  }
  try {
    // Parses every file and checks that the key belongs to the certificate.
    createSecureContext(material);
  } catch (error) {
    throw new ShoalError(
      'CONFIG_INVALID',
      `TLS files ${[files.certFile, files.keyFile, files.caFile].filter(Boolean).join(', ')} ` +
        `do not load: ${(error as Error).message}`,
    );
  }
  return material;
};

const withValue = <K extends string>(key: K, value: Buffer | undefined) =>
  (value === undefined ? {} : { [key]: value }) as Partial<Record<K, Buffer>>;

/**
 * Loads TLS files (failing fast when the first set does not load) and keeps them current:
 * the files are polled every `pollMs` (stat only; certificates rotated by a tool or a
 * Kubernetes secret are taken within that time) and re-read on `reload()`.
 */
export const watchTlsFiles = (
  files: TlsFiles,
  options: { logger: Logger; pollMs?: number },
): ReloadableTls => {
  let material = readTlsFiles(files);
  const listeners: Array<(material: TlsMaterial) => void> = [];
  const paths = [files.certFile, files.keyFile, files.caFile].filter(
    (p): p is string => p !== undefined && p !== '',
  );
  const reload = (): boolean => {
    let next: TlsMaterial;
    try {
      next = readTlsFiles(files);
    } catch (error) {
      options.logger.error({ err: error }, 'TLS files did not reload; keeping the current ones');
      return false;
    }
    if (same(next, material)) return false;
    material = next;
    options.logger.info({ files: paths }, 'TLS files reloaded');
    for (const listener of listeners) listener(material);
    return true;
  };
  let pending: NodeJS.Timeout | undefined;
  const onStat = (current: Stats, previous: Stats) => {
    if (current.mtimeMs === previous.mtimeMs && current.ino === previous.ino) return;
    // A rotation writes several files: read them once they have all landed.
    clearTimeout(pending);
    pending = setTimeout(reload, 100);
    pending.unref();
  };
  for (const path of paths) {
    watchFile(path, { interval: options.pollMs ?? 2000, persistent: false }, onStat);
  }
  return {
    current: () => material,
    reload,
    onChange: (listener) => void listeners.push(listener),
    close: () => {
      clearTimeout(pending);
      for (const path of paths) unwatchFile(path, onStat);
    },
  };
};

const same = (a: TlsMaterial, b: TlsMaterial) =>
  equal(a.cert, b.cert) && equal(a.key, b.key) && equal(a.ca, b.ca);
const equal = (a: Buffer | undefined, b: Buffer | undefined) =>
  a === undefined || b === undefined ? a === b : a.equals(b);

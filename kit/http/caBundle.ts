import { readFileSync } from 'node:fs';
import { ShoalError } from '../../domain';

/** A PEM CA bundle read at start (a missing or unreadable file fails the config). */
export const readCaFile = (path: string, owner: string): Buffer => {
  try {
    const bytes = readFileSync(path);
    if (!bytes.includes('-----BEGIN CERTIFICATE-----')) throw new Error('no PEM certificate in it');
    return bytes;
  } catch (error) {
    throw new ShoalError(
      'CONFIG_INVALID',
      `${owner}: CA file ${path}: ${(error as Error).message}`,
    );
  }
};

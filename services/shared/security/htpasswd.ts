import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import { readFileSync, statSync } from 'node:fs';
import bcrypt from 'bcryptjs';
import { ShoalError } from '../../../domain';

/** A bcrypt hash as `htpasswd -B` writes it (`$2y$`), or as other tools do (`$2a$`, `$2b$`). */
const bcryptHash = /^\$2[aby]\$\d{2}\$[./A-Za-z0-9]{53}$/;

/** Verified passwords are remembered this long, so Basic auth on every request stays cheap. */
const rememberMs = 60_000;
/** How often the file's modification time is looked at. */
const statEveryMs = 1000;

/**
 * Compared against when the user is unknown, so timing does not tell which users exist. Made
 * on first use: a bcrypt hash costs ~0.1–0.4 s of CPU, which every `shoal` process (an agent,
 * `--help`) paid at start when it was made on import.
 */
let decoy: Promise<string> | undefined;
const decoyHash = (): Promise<string> =>
  (decoy ??= bcrypt.hash(randomBytes(16).toString('hex'), 10));

export type Htpasswd = {
  /** Whether `password` is the user's; false for an unknown user (after as much work). */
  verify(user: string, password: string): Promise<boolean>;
};

/**
 * Parses an htpasswd file: `user:hash` lines, `#` comments and blank lines ignored. Only bcrypt
 * hashes are accepted: htpasswd's MD5, SHA-1 and crypt formats are fast to brute-force, and a
 * file holding one is refused with the line that does.
 */
export const parseHtpasswd = (text: string, origin: string): Map<string, string> => {
  const users = new Map<string, string>();
  text.split(/\r?\n/).forEach((raw, index) => {
    const line = raw.trim();
    if (line === '' || line.startsWith('#')) return;
    const colon = line.indexOf(':');
    const user = line.slice(0, colon);
    const hash = line.slice(colon + 1);
    if (colon <= 0 || !bcryptHash.test(hash)) {
      throw new ShoalError(
        'CONFIG_INVALID',
        `${origin} line ${index + 1}: want user:<bcrypt hash> (htpasswd -B); other hash ` +
          'formats are refused',
      );
    }
    users.set(user, hash);
  });
  return users;
};

/**
 * The users of an htpasswd file, re-read when the file changes (checked at most once a second,
 * on use): adding or removing a user needs no restart. A file that becomes unreadable or
 * invalid keeps the last good users and is logged by the caller through `onReloadError`.
 */
export const openHtpasswd = (
  file: string,
  options: { now?: () => number; onReloadError?: (error: unknown) => void } = {},
): Htpasswd => {
  const now = options.now ?? Date.now;
  const load = () => parseHtpasswd(readFileSync(file, 'utf8'), file);
  let users: Map<string, string>;
  let loadedMtime: number;
  try {
    users = load();
    loadedMtime = statSync(file).mtimeMs;
  } catch (error) {
    if ((error as { code?: string }).code === 'CONFIG_INVALID') throw error;
    throw new ShoalError(
      'CONFIG_INVALID',
      `auth.htpasswd.file ${file}: ${(error as Error).message}`,
    );
  }
  let checkedAt = now();
  /** user → hash of (salt, password) verified recently, with when it was. */
  const verified = new Map<string, { key: Buffer; at: number }>();
  const salt = randomBytes(16);
  const keyOf = (user: string, password: string) =>
    createHash('sha256').update(salt).update(user).update('\0').update(password).digest();

  const refresh = () => {
    if (now() - checkedAt < statEveryMs) return;
    checkedAt = now();
    try {
      const mtime = statSync(file).mtimeMs;
      if (mtime === loadedMtime) return;
      users = load();
      loadedMtime = mtime;
      verified.clear();
    } catch (error) {
      options.onReloadError?.(error);
    }
  };

  return {
    async verify(user, password) {
      refresh();
      const key = keyOf(user, password);
      const seen = verified.get(user);
      if (seen !== undefined && now() - seen.at < rememberMs && timingSafeEqual(seen.key, key)) {
        return true;
      }
      const hash = users.get(user);
      const ok = await bcrypt.compare(password, hash ?? (await decoyHash()));
      if (!ok || hash === undefined) return false;
      if (verified.size > 10_000) verified.clear();
      verified.set(user, { key, at: now() });
      return true;
    },
  };
};

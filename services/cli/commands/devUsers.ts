import { generateKeyPairSync, randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import bcrypt from 'bcryptjs';

/** The admin `shoal dev --secure` makes, and the `auth` sections its roles then run with. */
export type DevUsers = {
  readonly admin: { readonly user: string; readonly password: string };
  /** Overrides of the proxy's and build-index's `auth` (one key: build-index checks tokens). */
  readonly auth: { htpasswd: { file: string }; admins: string[]; token: { keyFile: string } };
};

/**
 * Users for `shoal dev --secure`, under `<dataDir>/auth/`: an htpasswd file holding one admin
 * with a fresh random password at every start (printed by dev; the last one stops working), and
 * the token signing key (EC P-256), made once and kept, so the proxy and build-index share it
 * and tokens survive a restart. Both files are readable by their owner only.
 */
export const createDevUsers = (dataDir: string): DevUsers => {
  const dir = join(dataDir, 'auth');
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  const user = 'admin';
  const password = randomBytes(12).toString('base64url');
  const htpasswd = join(dir, 'htpasswd');
  writeFileSync(htpasswd, `${user}:${bcrypt.hashSync(password, 10)}\n`, { mode: 0o600 });
  const keyFile = join(dir, 'token-key.pem');
  if (!existsSync(keyFile)) {
    const { privateKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
    writeFileSync(keyFile, privateKey.export({ type: 'pkcs8', format: 'pem' }), { mode: 0o600 });
  }
  return {
    admin: { user, password },
    auth: { htpasswd: { file: htpasswd }, admins: [user], token: { keyFile } },
  };
};

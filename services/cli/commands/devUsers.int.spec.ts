import { readFileSync, statSync } from 'node:fs';
import { tempDir } from '../../../test/fixtures/cli';
import { openHtpasswd } from '../../shared/security/htpasswd';
import { createTokenSigner, readPublicKey } from '../../shared/security/tokens';
import { createDevUsers } from './devUsers';

describe('the users of shoal dev --secure', () => {
  it('makes an admin with a fresh password per start, and one signing key kept across starts', async () => {
    const dir = tempDir('shoal-dev-users-');
    try {
      const first = createDevUsers(dir.path);
      expect(first.auth.admins).toEqual(['admin']);
      expect(statSync(first.auth.htpasswd.file).mode & 0o077).toBe(0);
      expect(statSync(first.auth.token.keyFile).mode & 0o077).toBe(0);
      const users = openHtpasswd(first.auth.htpasswd.file);
      expect(await users.verify('admin', first.admin.password)).toBe(true);
      expect(await users.verify('admin', 'guess')).toBe(false);

      const key = readFileSync(first.auth.token.keyFile, 'utf8');
      const signer = createTokenSigner({
        keyFile: first.auth.token.keyFile,
        issuer: 'shoal',
        audience: 'shoal',
      });
      expect(signer.publicKey.equals(readPublicKey(first.auth.token.keyFile))).toBe(true);

      const second = createDevUsers(dir.path);
      expect(second.admin.password).not.toBe(first.admin.password);
      expect(readFileSync(second.auth.token.keyFile, 'utf8')).toBe(key);
      const reread = openHtpasswd(second.auth.htpasswd.file);
      expect(await reread.verify('admin', second.admin.password)).toBe(true);
      expect(await reread.verify('admin', first.admin.password)).toBe(false);
    } finally {
      dir.cleanup();
    }
  });
});

import { execFileSync } from 'node:child_process';
import { utimesSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { tempDir } from '../../../test/fixtures/cli';
import { openHtpasswd, parseHtpasswd } from './htpasswd';

// The htpasswd file as Apache's `htpasswd -B` writes it (bcrypt, `$2y$`), read and checked.
const htpasswdLine = (user: string, password: string) =>
  execFileSync('htpasswd', ['-nbB', '-C', '5', user, password], { encoding: 'utf8' }).trim();

describe('htpasswd users', () => {
  let dir: ReturnType<typeof tempDir>;
  beforeAll(() => {
    dir = tempDir('shoal-htpasswd-');
  });
  afterAll(() => dir.cleanup());

  it('verifies passwords of a file written by htpasswd -B, and nothing else', async () => {
    const file = join(dir.path, 'users');
    writeFileSync(
      file,
      `# team\n${htpasswdLine('alice', 's3cret')}\n\n${htpasswdLine('bob', 'pw')}\n`,
    );
    const users = openHtpasswd(file);
    await expect(users.verify('alice', 's3cret')).resolves.toBe(true);
    await expect(users.verify('alice', 's3cret')).resolves.toBe(true); // remembered
    await expect(users.verify('alice', 'S3cret')).resolves.toBe(false);
    await expect(users.verify('bob', 'pw')).resolves.toBe(true);
    await expect(users.verify('carol', 'pw')).resolves.toBe(false);
  });

  it('refuses weak hash formats with the line that holds one', () => {
    const md5 = execFileSync('htpasswd', ['-nbm', 'old', 'pw'], { encoding: 'utf8' }).trim();
    expect(() => parseHtpasswd(`${htpasswdLine('a', 'b')}\n${md5}\n`, 'users')).toThrow(
      /users line 2: want user:<bcrypt hash>/,
    );
  });

  it('re-reads the file when it changes: a removed user can no longer log in', async () => {
    const file = join(dir.path, 'changing');
    writeFileSync(file, `${htpasswdLine('alice', 'a')}\n${htpasswdLine('bob', 'b')}\n`);
    let now = 1_000_000;
    const users = openHtpasswd(file, { now: () => now });
    await expect(users.verify('bob', 'b')).resolves.toBe(true);
    writeFileSync(file, `${htpasswdLine('alice', 'a')}\n`);
    utimesSync(file, new Date(), new Date(Date.now() + 5_000));
    now += 2_000;
    await expect(users.verify('bob', 'b')).resolves.toBe(false);
    await expect(users.verify('alice', 'a')).resolves.toBe(true);
  });
});

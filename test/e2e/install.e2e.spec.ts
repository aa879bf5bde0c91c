import { spawnSync } from 'node:child_process';
import { readdirSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { tempDir } from '../fixtures/cli';

// The README's install: `npm pack`, then `npm install -g` of the tarball (here into a
// temporary prefix) gives a `shoal` command that works from any directory, native module
// (better-sqlite3) included. `npm test` has built dist/ already, so packing skips `prepare`.

const root = resolve(__dirname, '../..');

const run = (command: string, args: string[], cwd: string, env: NodeJS.ProcessEnv = {}) => {
  const result = spawnSync(command, args, {
    cwd,
    encoding: 'utf8',
    env: { ...process.env, ...env },
    timeout: 900_000,
  });
  return { status: result.status ?? -1, stdout: result.stdout, stderr: result.stderr };
};

describe('installing the shoal command from a packed tarball', () => {
  it('gives a shoal command that works from another directory', () => {
    const dir = tempDir('shoal-install-');
    try {
      const pack = run(
        'npm',
        ['pack', '--ignore-scripts', '--pack-destination', dir.path, '--silent'],
        root,
      );
      expect(pack.status).toBe(0);
      const tarball = readdirSync(dir.path).find((name) => name.endsWith('.tgz'));
      expect(tarball).toBeDefined();
      const prefix = join(dir.path, 'prefix');
      const install = run(
        'npm',
        [
          'install',
          '-g',
          '--prefix',
          prefix,
          '--prefer-offline',
          '--no-audit',
          '--no-fund',
          join(dir.path, tarball ?? ''),
        ],
        dir.path,
      );
      expect(install.status).toBe(0);

      const shoal = join(prefix, 'bin', 'shoal');
      const elsewhere = join(dir.path, 'elsewhere');
      run('mkdir', ['-p', elsewhere], dir.path);
      const help = run(shoal, ['--help'], elsewhere);
      expect(help.status).toBe(0);
      expect(help.stdout).toMatch(/^Usage: shoal /);
      // The native log (better-sqlite3) works: write a tag and read it back.
      const digest = `sha256:${'a'.repeat(64)}`;
      const put = run(shoal, ['tags', 'put', 'demo/app:v1', digest, '--force'], elsewhere);
      expect(put.stderr).toBe('');
      expect(put.status).toBe(0);
      expect(run(shoal, ['tags', 'get', 'demo/app:v1'], elsewhere).stdout.trim()).toBe(digest);
      // Only the build goes into the tarball: no sources, no tests.
      const files = run('tar', ['-tzf', join(dir.path, tarball ?? '')], dir.path).stdout;
      expect(files).toContain('package/dist/services/cli/main.js');
      expect(files).not.toMatch(/\.spec\.|package\/test\//);
    } finally {
      dir.cleanup();
    }
  }, 1_200_000);
});

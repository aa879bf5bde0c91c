import { spawn } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { DataDirClaim } from './dataDirLock';
import { lockDataDir } from './dataDirLock';

// The data directory's locks across real processes: held for a process's life, gone with it
// (even after SIGKILL), and a refused start names the holder's pid and addresses.

const fixtures = join(__dirname, '../../test/fixtures');

type Holder = { child: ChildProcess; line: Promise<string> };

/** Starts a process that claims `root` and holds it; `line` is `locked` or `refused …`. */
const holder = (root: string, claim: DataDirClaim, urls: Record<string, string> = {}): Holder => {
  const child = spawn(
    process.execPath,
    [
      '--expose-gc',
      '-r',
      join(fixtures, 'register.js'),
      join(fixtures, 'dataDirLockHolder.ts'),
      root,
      JSON.stringify(claim),
      JSON.stringify(urls),
      claim.kind === 'cluster' ? 'shoal dev' : `shoal ${claim.role}`,
    ],
    { stdio: ['ignore', 'pipe', 'inherit'] },
  );
  const line = new Promise<string>((resolve) => {
    let out = '';
    child.stdout?.on('data', (d: Buffer) => {
      out += d.toString();
      if (out.includes('\n')) resolve(out.trim());
    });
    child.once('exit', () => resolve(out.trim()));
  });
  return { child, line };
};

const kill = (child: ChildProcess, signal: NodeJS.Signals = 'SIGTERM') =>
  new Promise<void>((resolve) => {
    if (child.exitCode !== null || child.signalCode !== null) return resolve();
    child.once('exit', () => resolve());
    child.kill(signal);
  });

const dev: DataDirClaim = { kind: 'cluster', cluster: 'default' };
const role = (name: string, id?: string): DataDirClaim => ({
  kind: 'role',
  role: name,
  cluster: 'default',
  ...(id !== undefined && { id }),
});

const refusal = (fn: () => unknown): { code: string; message: string } => {
  try {
    fn();
  } catch (error) {
    return error as { code: string; message: string };
  }
  throw new Error('expected a refusal');
};

describe('data directory lock', () => {
  let root: string;
  const children: ChildProcess[] = [];
  beforeEach(() => {
    root = mkdtempSync(join(tmpdir(), 'shoal-lock-'));
  });
  afterEach(async () => {
    await Promise.all(children.splice(0).map((c) => kill(c, 'SIGKILL')));
    rmSync(root, { recursive: true, force: true });
  });
  const start = (claim: DataDirClaim, urls?: Record<string, string>) => {
    const h = holder(root, claim, urls);
    children.push(h.child);
    return h;
  };

  it('refuses a second dev, naming the first one’s pid and addresses', async () => {
    const first = start(dev, { proxy: 'http://127.0.0.1:21500' });
    expect(await first.line).toBe('locked');
    const { code, message } = refusal(() => lockDataDir(root, dev, 'shoal dev'));
    expect(code).toBe('DATA_DIR_IN_USE');
    expect(message).toContain(`data directory ${root} is in use by another shoal dev`);
    expect(message).toContain(`shoal dev (pid ${first.child.pid}; proxy http://127.0.0.1:21500`);
    expect(message).toContain('give this one another --data-dir');
  });

  it('takes over the lock of a process killed with SIGKILL', async () => {
    const first = start(dev, { proxy: 'http://127.0.0.1:21500' });
    expect(await first.line).toBe('locked');
    await kill(first.child, 'SIGKILL');
    const lock = lockDataDir(root, dev, 'shoal dev');
    lock.update({ proxy: 'http://127.0.0.1:21600' });
    // A role now finds this process in the way, with its own addresses.
    const other = start(role('proxy'));
    expect(await other.line).toMatch(
      new RegExp(
        `^refused DATA_DIR_IN_USE .*shoal dev \\(pid ${process.pid}; proxy http://127\\.0\\.0\\.1:21600`,
      ),
    );
    lock.release();
    const again = start(role('proxy'));
    expect(await again.line).toBe('locked');
  });

  it('lets role processes share the directory, one per identity', async () => {
    expect(await start(role('origin', 'a'), { origin: 'http://127.0.0.1:1' }).line).toBe('locked');
    expect(await start(role('origin', 'b')).line).toBe('locked');
    expect(await start(role('proxy')).line).toBe('locked');
    expect(await start(role('build-index')).line).toBe('locked');
    const same = start(role('origin', 'a'));
    expect(await same.line).toMatch(
      /^refused DATA_DIR_IN_USE .*another origin with id "a": shoal origin \(pid \d+; origin http:\/\/127\.0\.0\.1:1;/,
    );
    // A dev cannot join them: it is told who runs.
    const { message } = refusal(() => lockDataDir(root, dev, 'shoal dev'));
    expect(message).toContain('in use by running Shoal services');
    expect(message.match(/shoal (origin|proxy|build-index) \(pid/g)?.sort()).toEqual([
      'shoal build-index (pid',
      'shoal origin (pid',
      'shoal origin (pid',
      'shoal proxy (pid',
    ]);
  });

  it('forgets role processes that died, and their files', async () => {
    const proxy = start(role('proxy'));
    expect(await proxy.line).toBe('locked');
    const files = () => readdirSync(join(root, 'locks')).filter((f) => f.startsWith('proxy-'));
    expect(files()).toHaveLength(2);
    await kill(proxy.child, 'SIGKILL');
    lockDataDir(root, dev, 'shoal dev').release();
    expect(files()).toEqual([]);
  });

  it('lets an agent that shoal dev started join the directory dev holds', async () => {
    const lock = lockDataDir(root, dev, 'shoal dev');
    try {
      // This process holds the lock and is the child's parent.
      const child = start({ ...role('agent', '2'), withParent: true } as DataDirClaim);
      expect(await child.line).toBe('locked');
      const stranger = start(role('agent', '3'));
      expect(await stranger.line).toMatch(/^refused DATA_DIR_IN_USE .*in use by shoal dev/);
    } finally {
      lock.release();
    }
  });

  it('frees the directory on release, for this process and others', async () => {
    const lock = lockDataDir(root, dev, 'shoal dev');
    expect(refusal(() => lockDataDir(root, role('proxy'), 'shoal proxy')).code).toBe(
      'DATA_DIR_IN_USE',
    );
    lock.release();
    expect(existsSync(join(root, 'locks', 'cluster.json'))).toBe(false);
    expect(await start(dev).line).toBe('locked');
  });
});

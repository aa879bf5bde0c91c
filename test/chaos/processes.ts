import type { ChildProcess } from 'node:child_process';
import { spawn } from 'node:child_process';
import { createWriteStream, existsSync } from 'node:fs';
import { dirname, join } from 'node:path';

// The soak's processes: each in a process group of its own (so kill -9, SIGSTOP and the final
// stop reach everything it started), its output appended to a log file in the run directory
// (kept for a post-mortem) and its last 64 KB kept in memory for readiness lines.

/** The repository root (holds package.json): the soak runs from test/ or from dist-bench/. */
export const repoRoot = (() => {
  let dir = __dirname;
  while (!existsSync(join(dir, 'package.json')) || dir.endsWith('dist-bench')) {
    const up = dirname(dir);
    if (up === dir) throw new Error(`no package.json above ${__dirname}`);
    dir = up;
  }
  return dir;
})();

/** The product's CLI, built by `npm run build`. */
export const shoalCli = join(repoRoot, 'dist/services/cli/main.js');

export type Running = {
  readonly child: ChildProcess;
  readonly exited: Promise<void>;
  /** The last 64 KB printed. */
  readonly output: () => string;
};

const live = new Set<ChildProcess>();
process.once('exit', () => {
  for (const child of live) signalGroup(child, 'SIGKILL');
});

export const signalGroup = (child: ChildProcess, signal: NodeJS.Signals): void => {
  if (child.pid === undefined) return;
  try {
    process.kill(-child.pid, signal);
  } catch {
    // gone already
  }
};

export const isRunning = (child: ChildProcess): boolean =>
  child.exitCode === null && child.signalCode === null;

/** Starts `command` in its own process group, appending its output to `logFile`. */
export const launch = (
  command: string,
  args: readonly string[],
  options: { logFile: string; env?: NodeJS.ProcessEnv; cwd?: string },
): Running => {
  const child = spawn(command, [...args], {
    cwd: options.cwd ?? repoRoot,
    detached: true,
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, ...options.env },
  });
  live.add(child);
  const file = createWriteStream(options.logFile, { flags: 'a' });
  let output = '';
  const collect = (data: Buffer) => {
    file.write(data);
    output += data.toString();
    if (output.length > 64 * 1024) output = output.slice(-32 * 1024);
  };
  child.stdout?.on('data', collect);
  child.stderr?.on('data', collect);
  const exited = new Promise<void>((resolve) => {
    const done = () => {
      live.delete(child);
      file.end();
      resolve();
    };
    child.once('error', (error) => {
      output += `\nspawn error: ${error.message}`;
      done();
    });
    child.once('exit', done);
  });
  return { child, exited, output: () => output };
};

/** Resolves when `pattern` appears in the output; rejects on exit or after `timeoutMs`. */
export const waitForLine = (
  running: Running,
  pattern: RegExp,
  timeoutMs: number,
  name: string,
): Promise<void> =>
  new Promise((resolve, reject) => {
    const check = () => {
      if (!pattern.test(running.output())) return false;
      finish();
      resolve();
      return true;
    };
    const onExit = () => {
      if (check()) return;
      finish();
      reject(new Error(`${name} exited before it was ready:\n${tail(running.output())}`));
    };
    const timer = setTimeout(() => {
      finish();
      reject(new Error(`${name}: not ready within ${timeoutMs} ms:\n${tail(running.output())}`));
    }, timeoutMs);
    const finish = () => {
      clearTimeout(timer);
      running.child.stdout?.off('data', check);
      running.child.stderr?.off('data', check);
      running.child.off('exit', onExit);
    };
    running.child.stdout?.on('data', check);
    running.child.stderr?.on('data', check);
    running.child.once('exit', onExit);
    if (!isRunning(running.child)) onExit();
    else check();
  });

/** SIGTERM to the group, SIGKILL after `graceMs`; resolves once it exited. */
export const stopGroup = async (running: Running, graceMs = 15_000): Promise<void> => {
  if (!isRunning(running.child)) return running.exited;
  signalGroup(running.child, 'SIGCONT'); // a frozen process cannot stop
  signalGroup(running.child, 'SIGTERM');
  const timer = setTimeout(() => signalGroup(running.child, 'SIGKILL'), graceMs);
  await running.exited;
  clearTimeout(timer);
};

export const tail = (text: string, lines = 25): string =>
  text
    .trimEnd()
    .split('\n')
    .slice(-lines)
    .map((line) => (line.length > 300 ? `${line.slice(0, 300)}…` : line))
    .join('\n');

export const delay = (ms: number): Promise<void> =>
  new Promise((resolve) => setTimeout(resolve, ms));

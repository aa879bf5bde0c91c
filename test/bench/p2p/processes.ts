import type { ChildProcess } from 'node:child_process';
import { spawn } from 'node:child_process';
import { createWriteStream, readFileSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
export { freePort } from '../../fixtures/ports';

/*
 * The processes a P2P benchmark starts, and what it reads about them from /proc: CPU
 * seconds, resident memory, the machine's busy and steal fractions.
 */

const root = resolve(__dirname, '../../../..');
export const cli = join(root, 'dist/services/cli/main.js');

export const MiB = 1024 * 1024;

/** Where every line of the report goes (stderr when stdout carries JSON). */
export const logTo = (json: boolean) => (line: string) => {
  if (json) process.stderr.write(`${line}\n`);
  else process.stdout.write(`${line}\n`);
};

export type Started = { readonly child: ChildProcess; readonly url: string };

const children: ChildProcess[] = [];
/** The last output of every child, by its argv (shown when the run fails). */
const outputs = new Map<string, () => string>();
let stopping = false;

/**
 * Starts `shoal …` and waits until `url/health` answers 200; with a RegExp, the URL is the
 * first group of the line the process prints when it listens (for port 0: no port races).
 * `SHOAL_BENCH_NODE_ARGS` goes to node (e.g. `--cpu-prof --cpu-prof-dir=/tmp/x`), and with
 * `SHOAL_BENCH_LOG_DIR` every process's output is kept in a file there.
 */
export const startShoal = async (
  argv: string[],
  where: string | RegExp,
  env: NodeJS.ProcessEnv = {},
): Promise<Started> => {
  const nodeArgs = (process.env.SHOAL_BENCH_NODE_ARGS ?? '').split(' ').filter(Boolean);
  const child = spawn(process.execPath, [...nodeArgs, cli, ...argv], {
    stdio: ['ignore', 'pipe', 'pipe'],
    // Security open: the bench measures the data path (the peer wire carries no credentials);
    // the roles' production default (`required`) needs a cluster key or certificates.
    env: { ...process.env, SHOAL_LOG_LEVEL: 'warn', SHOAL_SECURITY_MODE: 'open', ...env },
  });
  children.push(child);
  const logDir = process.env.SHOAL_BENCH_LOG_DIR;
  if (logDir) {
    const file = createWriteStream(join(logDir, `${argv[0]}-${child.pid}.log`));
    child.stdout?.pipe(file);
    child.stderr?.pipe(file);
  }
  let output = '';
  child.stdout?.on('data', (d: Buffer) => (output = (output + d.toString()).slice(-8000)));
  child.stderr?.on('data', (d: Buffer) => (output = (output + d.toString()).slice(-8000)));
  outputs.set(`${argv.join(' ')} (${child.pid})`, () => output);
  child.once('exit', (code, signal) => {
    if (!stopping && !exited.has(child)) {
      process.stderr.write(`shoal ${argv.join(' ')} exited (${code ?? signal}):\n${output}\n`);
    }
  });
  // Generous: spawning 64 processes on a busy 2-core machine takes a while (not timed).
  const deadline = Date.now() + 300_000;
  while (Date.now() < deadline) {
    if (child.exitCode !== null) throw new Error(`shoal ${argv[0]} exited:\n${output}`);
    const url = typeof where === 'string' ? where : where.exec(output)?.[1];
    const ok =
      url !== undefined &&
      (await fetch(`${url}/health`)
        .then((r) => r.status === 200)
        .catch(() => false));
    if (ok) return { child, url };
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`shoal ${argv[0]} did not start:\n${output}`);
};

/** Children stopped on purpose before the end (not reported as crashes). */
const exited = new Set<ChildProcess>();

/** Stops one process (SIGTERM, SIGKILL after 10 s) and waits for it. */
export const stop = (child: ChildProcess): Promise<void> =>
  new Promise<void>((done) => {
    exited.add(child);
    if (child.exitCode !== null || child.signalCode !== null) return done();
    const killer = setTimeout(() => child.kill('SIGKILL'), 10_000);
    child.once('exit', () => {
      clearTimeout(killer);
      done();
    });
    child.kill('SIGTERM');
  });

export const stopAll = async (): Promise<void> => {
  stopping = true;
  await Promise.all(children.map(stop));
};

/** The last warnings of every child, for a failed run's report. */
export const childWarnings = (): string[] => {
  const out: string[] = [];
  for (const [argv, output] of outputs) {
    const lines = output()
      .split('\n')
      .filter((l) => /warn|error|"level":[45]0/i.test(l));
    if (lines.length > 0) out.push(`--- ${argv}:\n${lines.slice(-5).join('\n')}`);
  }
  return out;
};

/** `/proc/<pid>/stat` after the command name (index 0 is field 3, the state). */
const statOf = (pid: number | undefined): string[] | undefined => {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  } catch {
    return undefined;
  }
};

const ticksPerSecond = 100;

/** CPU seconds a process has used so far, in all and in the kernel; 0 once it is gone. */
const cpuTimes = (pid: number | undefined): { total: number; system: number } => {
  const fields = statOf(pid);
  if (fields === undefined) return { total: 0, system: 0 };
  const system = Number(fields[12]) / ticksPerSecond;
  return { total: Number(fields[11]) / ticksPerSecond + system, system };
};

/**
 * CPU seconds used by a set of processes since this call, per process and in all, and the
 * part of each spent in the kernel (system time: socket and file syscalls, page faults).
 * Each sample reads every process's stat once.
 */
export const cpuMeter = (pids: readonly (number | undefined)[]) => {
  const start = pids.map(cpuTimes);
  return () => {
    const now = pids.map(cpuTimes);
    const each = now.map((t, i) => t.total - (start[i]?.total ?? 0));
    const system = now.map((t, i) => t.system - (start[i]?.system ?? 0));
    return { each, system, total: each.reduce((a, b) => a + b, 0) };
  };
};

/** This process's CPU seconds since the call (the harness acting as clients). */
export const ownCpuMeter = () => {
  const start = process.cpuUsage();
  return () => {
    const used = process.cpuUsage(start);
    return (used.user + used.system) / 1e6;
  };
};

/** Samples /proc/stat: mean busy and steal fractions of all cores over the window. */
export const machineCpu = () => {
  const read = () => {
    const line = readFileSync('/proc/stat', 'utf8').split('\n')[0] ?? '';
    const v = line.trim().split(/\s+/).slice(1).map(Number);
    const [user = 0, nice = 0, system = 0, idle = 0, iowait = 0, irq = 0, softirq = 0, steal = 0] =
      v;
    const total = user + nice + system + idle + iowait + irq + softirq + steal;
    return { total, idle: idle + iowait, steal };
  };
  const start = read();
  return () => {
    const end = read();
    const total = Math.max(1, end.total - start.total);
    return { busy: 1 - (end.idle - start.idle) / total, steal: (end.steal - start.steal) / total };
  };
};

/** A line of /proc/<pid>/status in bytes (`VmRSS`, `VmHWM`), or NaN. */
const statusBytes = (pid: number | undefined, key: string): number => {
  try {
    const status = readFileSync(`/proc/${pid}/status`, 'utf8');
    const kib = new RegExp(`^${key}:\\s+(\\d+) kB`, 'm').exec(status)?.[1];
    return kib === undefined ? NaN : Number(kib) * 1024;
  } catch {
    return NaN;
  }
};

/**
 * Peak resident memory of a process from now on: the kernel's high-water mark, reset at the
 * start (`clear_refs` 5), and sampled every 50 ms in case the reset is not allowed.
 */
export const rssWatch = (pid: number | undefined) => {
  const base = statusBytes(pid, 'VmRSS');
  let reset = true;
  try {
    writeFileSync(`/proc/${pid}/clear_refs`, '5');
  } catch {
    reset = false;
  }
  let max = base;
  const timer = setInterval(() => (max = Math.max(max, statusBytes(pid, 'VmRSS'))), 50);
  return {
    base,
    /** Peak RSS minus the RSS when the watch started, in bytes. */
    stop: () => {
      clearInterval(timer);
      const hwm = reset ? statusBytes(pid, 'VmHWM') : NaN;
      return Math.max(max, Number.isNaN(hwm) ? 0 : hwm, statusBytes(pid, 'VmRSS')) - base;
    },
  };
};

export const quantile = (sorted: number[], q: number) =>
  sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1))] ?? NaN;

/** `128MiB`, `6 MiB/s`, `1.5G` or plain bytes. */
export const parseBytes = (text: string, what: string): number => {
  const m = /^(\d+(?:\.\d+)?)\s*(B|KiB|MiB|GiB|K|M|G|KB|MB|GB)?(?:\/s)?$/i.exec(text.trim());
  if (m === null) throw new Error(`${what}: want e.g. 128MiB or 6291456; got "${text}"`);
  const unit = (m[2] ?? 'B').toUpperCase().replace(/I?B$/, '') || 'B';
  const factor = { B: 1, K: 1024, M: 1024 ** 2, G: 1024 ** 3 }[unit] ?? 1;
  return Math.round(Number(m[1]) * factor);
};

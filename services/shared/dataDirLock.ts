import { mkdirSync, readdirSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { hostname } from 'node:os';
import { join } from 'node:path';
import { ShoalError } from '../../domain';
import type { ProcessLock } from '../../kit/sqlite';
import { tryProcessLock } from '../../kit/sqlite';

// Who runs on a data directory. `shoal dev` is a whole cluster: it owns the directory alone.
// Role processes (`shoal origin`, `shoal proxy`, …) may share one, as a cluster of processes on
// one host does, but never with `shoal dev`, and never two with one identity (two `origin 1`
// would register the same ring member at two addresses). The locks are held by the operating
// system for the life of the process (kit's `tryProcessLock`): a process that died, even by
// kill -9, holds nothing, so its lock is taken over without anyone deciding it is stale.
//
// Files, in `<dataDir>/locks/`: `cluster.lock` (dev: exclusive; roles: shared), one
// `<role>-<id>.lock` per role process (exclusive), and beside each a `.json` naming the holder
// (pid, host, command, addresses) for the message that refuses a second start.

/** What a refused start is told about the process in the way. */
export type LockHolder = {
  readonly pid: number;
  readonly host: string;
  /** `shoal dev`, `shoal origin 1`, … */
  readonly command: string;
  readonly cluster: string;
  readonly startedAt: string;
  /** Addresses it listens on, by role (`proxy: http://…`), once known. */
  readonly urls: Readonly<Record<string, string>>;
};

export type DataDirClaim =
  /** The whole directory, alone (`shoal dev`). */
  | { readonly kind: 'cluster'; readonly cluster: string }
  /**
   * One role process among others. `id` makes it unique (an origin's or agent's id); without
   * one it is one of possibly many (proxy, build-index, replicator). `withParent`: the process
   * that started this one holds the directory (an agent of `shoal dev --agents`).
   */
  | {
      readonly kind: 'role';
      readonly role: string;
      readonly id?: string;
      readonly cluster: string;
      readonly withParent?: boolean;
    };

export type DataDirLock = {
  /** Records the addresses this process listens on, for the message that refuses others. */
  readonly update: (urls: Record<string, string>) => void;
  readonly release: () => void;
};

const lockDir = (root: string) => join(root, 'locks');

const readHolder = (path: string): LockHolder | undefined => {
  try {
    return JSON.parse(readFileSync(path, 'utf8')) as LockHolder;
  } catch {
    return undefined;
  }
};

const writeHolder = (path: string, holder: LockHolder) => {
  // Write-then-rename: a reader never sees half a file.
  const temp = `${path}.${process.pid}.tmp`;
  writeFileSync(temp, `${JSON.stringify(holder, null, 2)}\n`);
  renameSync(temp, path);
};

/** A holder whose file is not written yet. */
const starting: LockHolder = {
  pid: 0,
  host: '',
  command: 'a process that is starting',
  cluster: '',
  startedAt: '',
  urls: {},
};

/** `shoal dev (pid 123; proxy http://127.0.0.1:5000, …; cluster "default", since …)`. */
export const describeHolder = (holder: LockHolder): string => {
  if (holder.pid === 0) return holder.command;
  const urls = Object.entries(holder.urls).map(([role, url]) => `${role} ${url}`);
  const where = holder.host === hostname() ? '' : ` on host ${holder.host}`;
  return (
    `${holder.command} (pid ${holder.pid}${where}` +
    `${urls.length > 0 ? `; ${urls.join(', ')}` : ''}; cluster "${holder.cluster}", ` +
    `since ${holder.startedAt})`
  );
};

/** The role processes that hold their lock now (probing each; stale files are removed). */
const liveRoles = (dir: string): LockHolder[] => {
  const holders: LockHolder[] = [];
  let names: string[];
  try {
    names = readdirSync(dir);
  } catch {
    return holders;
  }
  for (const name of names) {
    if (!name.endsWith('.lock') || name === 'cluster.lock') continue;
    const base = join(dir, name.slice(0, -'.lock'.length));
    const probe = tryProcessLock(`${base}.lock`, 'exclusive');
    if (probe === undefined) {
      holders.push(readHolder(`${base}.json`) ?? starting);
      continue;
    }
    probe.release();
    // Nobody holds it: the process is gone. A file named by its pid is never used again.
    if (/-pid\d+$/.test(base)) {
      rmSync(`${base}.json`, { force: true });
      rmSync(`${base}.lock`, { force: true });
    }
  }
  return holders;
};

const inUse = (root: string, what: string, remedy: string, holders: LockHolder[]) =>
  new ShoalError(
    'DATA_DIR_IN_USE',
    `data directory ${root} is in use by ${what}: ${holders.map(describeHolder).join('; ')}. ` +
      remedy,
    { detail: { holders: holders.map((h) => ({ pid: h.pid, command: h.command, urls: h.urls })) } },
  );

/**
 * Claims a data directory (an existing, Shoal-marked one) for this process, or fails with
 * `DATA_DIR_IN_USE` naming the process in the way, its pid and addresses. Hold the returned
 * lock for the life of the process; `release()` on a clean shutdown.
 */
export const lockDataDir = (root: string, claim: DataDirClaim, command: string): DataDirLock => {
  const dir = lockDir(root);
  mkdirSync(dir, { recursive: true });
  const clusterLockPath = join(dir, 'cluster.lock');
  const clusterInfoPath = join(dir, 'cluster.json');
  const holder: { -readonly [K in keyof LockHolder]: LockHolder[K] } = {
    pid: process.pid,
    host: hostname(),
    command,
    cluster: claim.cluster,
    startedAt: new Date().toISOString(),
    urls: {},
  };
  const held: ProcessLock[] = [];
  const releaseAll = () => {
    for (const lock of held.splice(0).reverse()) lock.release();
  };
  /** Once the locks are held: the holder's file, kept up to date, removed on release. */
  const holding = (infoPath: string): DataDirLock => {
    writeHolder(infoPath, holder);
    return {
      update: (urls) => {
        holder.urls = { ...urls };
        writeHolder(infoPath, holder);
      },
      release: () => {
        rmSync(infoPath, { force: true });
        releaseAll();
      },
    };
  };

  if (claim.kind === 'cluster') {
    const lock = tryProcessLock(clusterLockPath, 'exclusive');
    if (lock === undefined) {
      // Held shared by role processes, or exclusively by another dev.
      const roles = liveRoles(dir);
      throw inUse(
        root,
        roles.length > 0 ? 'running Shoal services' : 'another shoal dev',
        'Stop it first, or give this one another --data-dir.',
        roles.length > 0 ? roles : [readHolder(clusterInfoPath) ?? starting],
      );
    }
    held.push(lock);
    // No role process can hold its lock now: this clears the files dead ones left.
    liveRoles(dir);
    return holding(clusterInfoPath);
  }

  const dev = readHolder(clusterInfoPath);
  const childOfDev = claim.withParent === true && dev?.pid === process.ppid;
  if (!childOfDev) {
    const shared = tryProcessLock(clusterLockPath, 'shared');
    if (shared === undefined) {
      throw inUse(
        root,
        'shoal dev',
        'Stop it first, or give this process another data directory (--data-dir or dataDir).',
        [dev ?? starting],
      );
    }
    held.push(shared);
  }
  const name = `${claim.role}-${claim.id ?? `pid${process.pid}`}`;
  const infoPath = join(dir, `${name}.json`);
  const own = tryProcessLock(join(dir, `${name}.lock`), 'exclusive');
  if (own === undefined) {
    releaseAll();
    const other = readHolder(infoPath);
    throw inUse(
      root,
      `another ${claim.role} with id "${claim.id ?? ''}"`,
      'Give this one another id (--id), or stop that one.',
      [other ?? starting],
    );
  }
  held.push(own);
  return holding(infoPath);
};

import { readFile, rename, rm, stat, utimes, writeFile } from 'node:fs/promises';
import { hostname } from 'node:os';
import type { Lease, LeaseHolder } from '../../domain';

/**
 * A lease on a file: who holds `<dataDir>/replicator.lock` runs the replicator. The holder
 * renews it (touches the file) every `leaseMs / 3`; a lock not renewed for `leaseMs`, or held
 * by a process of this host that no longer exists (kill -9), is taken over. It keeps two
 * build-index processes on one data directory from doing the same work twice; across hosts
 * (a shared log, separate data directories) replication is idempotent instead.
 */
export type FileLease = Lease;

const alive = (pid: number): boolean => {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'EPERM';
  }
};

type LeaseFile = { holder: LeaseHolder; ageMs: number };

const readLease = async (path: string): Promise<LeaseFile | undefined> => {
  try {
    const [text, info] = await Promise.all([readFile(path, 'utf8'), stat(path)]);
    return { holder: JSON.parse(text) as LeaseHolder, ageMs: Date.now() - info.mtimeMs };
  } catch {
    return undefined;
  }
};

/** Not renewed for `leaseMs`, or held by a process of this host that no longer exists. */
const isStale = (lease: LeaseFile, leaseMs: number): boolean =>
  lease.ageMs > leaseMs || (lease.holder.host === hostname() && !alive(lease.holder.pid));

/**
 * The process that holds the lease at `path` now, if any (a stale lease counts as none): for
 * status read beside a running replicator, from the data directory.
 */
export const liveLeaseHolder = async (
  path: string,
  leaseMs: number,
): Promise<LeaseHolder | undefined> => {
  const lease = await readLease(path);
  return lease === undefined || isStale(lease, leaseMs) ? undefined : lease.holder;
};

export const createFileLease = (path: string, options: { leaseMs: number }): FileLease => {
  const self: LeaseHolder = {
    pid: process.pid,
    host: hostname(),
    token: `${process.pid}-${Date.now()}-${Math.random().toString(16).slice(2)}`,
  };

  const read = () => readLease(path);

  const write = async () => {
    // Write-then-rename: a reader never sees half a file.
    const temp = `${path}.${self.token}`;
    await writeFile(temp, JSON.stringify(self));
    await rename(temp, path);
  };

  const mine = (holder: LeaseHolder | undefined) => holder?.token === self.token;

  return {
    holder: async () => (await read())?.holder,

    async tryAcquire() {
      const current = await read();
      if (current !== undefined && !mine(current.holder)) {
        if (!isStale(current, options.leaseMs)) return false;
      }
      await write();
      // Two processes may both have seen the lease stale: the last rename wins; check.
      return mine((await read())?.holder);
    },

    async renew() {
      const current = await read();
      if (!mine(current?.holder)) return false;
      const now = new Date();
      await utimes(path, now, now).catch(() => undefined);
      return true;
    },

    async release() {
      if (mine((await read())?.holder)) await rm(path, { force: true });
    },
  };
};

import { readFile, rename, rm, stat, utimes, writeFile } from 'node:fs/promises';
import { hostname } from 'node:os';

/**
 * A lease on a file: who holds `<dataDir>/replicator.lock` runs the replicator. The holder
 * renews it (touches the file) every `leaseMs / 3`; a lock not renewed for `leaseMs`, or held
 * by a process of this host that no longer exists (kill -9), is taken over. It keeps two
 * build-index processes on one data directory from doing the same work twice; across hosts
 * (a shared log, separate data directories) replication is idempotent instead.
 */
export type FileLease = {
  /** Takes the lease if it is free or stale; true when this process holds it. */
  tryAcquire(): Promise<boolean>;
  /** Renews the lease; false when another process took it meanwhile. */
  renew(): Promise<boolean>;
  release(): Promise<void>;
  readonly holder: () => Promise<LeaseHolder | undefined>;
};

export type LeaseHolder = { readonly pid: number; readonly host: string; readonly token: string };

const alive = (pid: number): boolean => {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'EPERM';
  }
};

export const createFileLease = (path: string, options: { leaseMs: number }): FileLease => {
  const self: LeaseHolder = {
    pid: process.pid,
    host: hostname(),
    token: `${process.pid}-${Date.now()}-${Math.random().toString(16).slice(2)}`,
  };

  const read = async (): Promise<{ holder: LeaseHolder; ageMs: number } | undefined> => {
    try {
      const [text, info] = await Promise.all([readFile(path, 'utf8'), stat(path)]);
      return { holder: JSON.parse(text) as LeaseHolder, ageMs: Date.now() - info.mtimeMs };
    } catch {
      return undefined;
    }
  };

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
        const stale =
          current.ageMs > options.leaseMs ||
          (current.holder.host === self.host && !alive(current.holder.pid));
        if (!stale) return false;
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

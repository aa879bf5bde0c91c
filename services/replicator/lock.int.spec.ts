import { mkdtempSync, rmSync, utimesSync, writeFileSync } from 'node:fs';
import { hostname, tmpdir } from 'node:os';
import { join } from 'node:path';
import { createFileLease } from './lock';

describe('the replicator lease (a file in the data directory)', () => {
  let dir: string;
  let path: string;
  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), 'shoal-lease-'));
    path = join(dir, 'replicator.lock');
  });
  afterEach(() => rmSync(dir, { recursive: true, force: true }));

  it('is held by one process at a time, and free again once released', async () => {
    const first = createFileLease(path, { leaseMs: 10_000 });
    const second = createFileLease(path, { leaseMs: 10_000 });
    expect(await first.tryAcquire()).toBe(true);
    expect(await second.tryAcquire()).toBe(false);
    expect(await first.renew()).toBe(true);
    expect(await second.renew()).toBe(false);
    await first.release();
    expect(await second.tryAcquire()).toBe(true);
    expect(await first.renew()).toBe(false);
  });

  it('is taken over from a dead process of this host (kill -9) at once', async () => {
    writeFileSync(path, JSON.stringify({ pid: 2 ** 22 + 17, host: hostname(), token: 'dead' }));
    expect(await createFileLease(path, { leaseMs: 60_000 }).tryAcquire()).toBe(true);
  });

  it('is taken over from another host only when not renewed for the lease time', async () => {
    writeFileSync(path, JSON.stringify({ pid: 1, host: 'elsewhere', token: 'other' }));
    const lease = createFileLease(path, { leaseMs: 5_000 });
    expect(await lease.tryAcquire()).toBe(false);
    const old = new Date(Date.now() - 10_000);
    utimesSync(path, old, old);
    expect(await lease.tryAcquire()).toBe(true);
  });
});

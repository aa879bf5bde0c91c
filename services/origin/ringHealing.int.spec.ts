import { existsSync } from 'node:fs';
import { join } from 'node:path';
import type { RepoName } from '../../domain';
import { owners } from '../../domain/placement';
import { systemClock } from '../shared/clock';
import { newEvent } from '../shared/events';
import type { BlobAccess } from './client/blobAccess';
import { createBlobAccess, staticRing } from './client/createBlobAccess';
import type { RunningOrigin } from './main';
import { leaveRing } from './main';
import type { OriginHarness } from '../../test/doubles/originHarness';
import { createOriginHarness } from '../../test/doubles/originHarness';
import { blobFixture } from '../../test/fixtures/blobs';
import { randomRepo } from '../../test/fixtures/events';
import { until } from '../../test/fixtures/processes';

// Ring healing with real origins on one log: when an origin leaves, the blobs it owned get new
// owners, which fill them from the surviving copies (or the backend) without any read, until
// every blob has R copies among its owners again; the under-replication gauge says so. The
// other way round, an origin holding blobs it no longer owns drops its copies once their owners
// hold theirs, so a blob ends on its owners only.

const localPath = (origin: RunningOrigin, digest: string) => {
  const hex = digest.slice('sha256:'.length);
  return join(origin.directory, 'blobs', 'sha256', hex.slice(0, 2), hex);
};

const gauge = async (origin: RunningOrigin, name: string): Promise<number> => {
  const text = await (await fetch(`${origin.url}/metrics`)).text();
  return Number(new RegExp(`^${name}(?:\\{[^}]*\\})? (\\d+)$`, 'm').exec(text)?.[1] ?? NaN);
};

describe('ring healing', () => {
  let harness: OriginHarness;
  const origins: Record<string, RunningOrigin> = {};
  let access: BlobAccess & { close: () => Promise<void> };

  /** Origins a, b and c (R = 2) on a fresh harness; the periodic pass far off by default. */
  const startRing = async (healing: { intervalMs: number; lostAfterMs?: number }) => {
    harness = createOriginHarness();
    for (const id of ['a', 'b', 'c']) {
      origins[id] = await harness.start({ id, replicas: 2, healing });
    }
    const head = await harness.log.head();
    for (const origin of Object.values(origins)) await origin.runner.waitFor(head, 5000);
    access = createBlobAccess({
      ring: staticRing(['a', 'b', 'c'].map((id) => ({ id, url: origins[id]?.url ?? '' }))),
      replicas: 2,
    });
  };

  /** Twelve blobs put through the ring, each on both its owners (placement jobs done). */
  const putPlaced = async (size: number) => {
    const repo = randomRepo() as RepoName;
    const blobs = Array.from({ length: 12 }, () => blobFixture(size));
    for (const blob of blobs) await access.put(blob.digest, blob.content, { repo });
    for (const blob of blobs) {
      for (const id of owners(blob.digest, ['a', 'b', 'c'], 2)) {
        await harness.waitForEvent(
          (e) => e.type === 'BlobPlaced' && e.data.digest === blob.digest && e.data.origin === id,
        );
      }
    }
    return { repo, blobs };
  };

  /** Whether an origin holds a blob on its own disk. */
  const held = (id: string, digest: string) =>
    existsSync(localPath(origins[id] as RunningOrigin, digest));

  /** Waits until each blob is on the disks of exactly its owners among `members`. */
  const onOwnersOnly = (blobs: readonly { digest: string }[], members: string[], what: string) =>
    until(
      () =>
        blobs.every(
          (b) =>
            ['a', 'b', 'c'].filter((id) => held(id, b.digest)).join() ===
            owners(b.digest, members, 2).sort().join(),
        ),
      30_000,
      `${what}: every blob on exactly its owners`,
      250,
    );

  /** Waits until each origin's under-replication gauge is zero (a pass saw every copy). */
  const healed = async (ids: string[]) => {
    for (const id of ids) {
      await until(
        async () =>
          (await gauge(origins[id] as RunningOrigin, 'shoal_origin_under_replicated_blobs')) === 0,
        15_000,
        `origin ${id} to report no under-replication`,
        200,
      );
    }
  };

  // Only a ring change may start a pass.
  beforeEach(() => startRing({ intervalMs: 600_000 }));
  afterEach(async () => {
    await access.close();
    await harness.cleanup();
  });

  it('fills the new owners when an origin leaves, until every blob has R copies', async () => {
    const { blobs } = await putPlaced(30_000);
    // c leaves; it keeps running, so its copies stay reachable to the healers.
    await leaveRing({ log: harness.log, clock: systemClock, cluster: 'default', id: 'c' });
    const moved = blobs.filter((b) => owners(b.digest, ['a', 'b', 'c'], 2).includes('c'));
    expect(moved.length).toBeGreaterThan(0);
    // Each blob c owned now belongs to a and b both: the one that lacked it fills it.
    for (const blob of moved) {
      for (const id of ['a', 'b']) {
        await harness.waitForEvent(
          (e) => e.type === 'BlobPlaced' && e.data.digest === blob.digest && e.data.origin === id,
          20_000,
        );
      }
    }
    for (const blob of blobs) {
      for (const id of ['a', 'b']) {
        expect([blob.digest, id, held(id, blob.digest)]).toEqual([blob.digest, id, true]);
      }
    }
    // Healed: the gauge is zero on both (after a pass that saw every copy).
    await healed(['a', 'b']);
    const filled = await Promise.all(
      ['a', 'b'].map(async (id) => {
        const text = await (await fetch(`${origins[id]?.url}/metrics`)).text();
        return Number(
          /^shoal_origin_healed_blobs_total\{[^}]*result="filled"[^}]*\} (\d+)$/m.exec(text)?.[1],
        );
      }),
    );
    expect(filled.reduce((x, y) => x + y, 0)).toBe(moved.length);
  }, 60_000);

  it('drops copies an origin no longer owns once the owners hold theirs, and back on return', async () => {
    const { repo, blobs } = await putPlaced(20_000);
    const moved = blobs.filter((b) => owners(b.digest, ['a', 'b', 'c'], 2).includes('c'));
    expect(moved.length).toBeGreaterThan(0);

    // c leaves (still running): a and b fill what c owned, then c drops its copies.
    await leaveRing({ log: harness.log, clock: systemClock, cluster: 'default', id: 'c' });
    await onOwnersOnly(blobs, ['a', 'b'], 'after c left');
    for (const blob of moved) {
      await harness.waitForEvent(
        (e) => e.type === 'BlobReleased' && e.data.digest === blob.digest && e.data.origin === 'c',
      );
    }

    // c comes back: it fills what it owns again, and whichever of a and b no longer owns a
    // blob drops its copy once c holds one.
    const writer = { clock: systemClock, cluster: 'default', actor: 'test' };
    await harness.log.append([
      newEvent(writer, 'OriginJoined', {
        id: 'c',
        address: (origins.c as RunningOrigin).advertiseUrl,
      }),
    ]);
    await onOwnersOnly(blobs, ['a', 'b', 'c'], 'after c returned');
    const released = await Promise.all(
      ['a', 'b', 'c'].map(async (id) =>
        gauge(origins[id] as RunningOrigin, 'shoal_origin_released_blobs_total'),
      ),
    );
    // c released every blob it owned; a or b released each of those once c held it again.
    expect(released.reduce((x, y) => x + y, 0)).toBe(2 * moved.length);
    // Reads still find every blob.
    for (const blob of blobs) {
      expect((await access.stat(blob.digest, { repo }))?.size).toBe(blob.content.length);
    }
  }, 90_000);

  it('gives a lost origin’s blobs R copies among the others, and releases them on its return', async () => {
    await access.close();
    await harness.cleanup();
    const healing = { intervalMs: 600_000, lostAfterMs: 1500 };
    await startRing(healing);
    const { blobs } = await putPlaced(20_000);

    // c goes down without leaving: past the grace, a and b each hold every blob.
    await (origins.c as RunningOrigin).close();
    await until(
      () => blobs.every((b) => held('a', b.digest) && held('b', b.digest)),
      30_000,
      'a and b hold every blob while c is lost',
      250,
    );
    await healed(['a', 'b']);
    // c comes back (same id and directory, a new port): the stand-in copies are released.
    origins.c = await harness.start({ id: 'c', replicas: 2, healing });
    await onOwnersOnly(blobs, ['a', 'b', 'c'], 'after c returned');
    const released = await Promise.all(
      ['a', 'b'].map((id) =>
        gauge(origins[id] as RunningOrigin, 'shoal_origin_released_blobs_total'),
      ),
    );
    const moved = blobs.filter((b) => owners(b.digest, ['a', 'b', 'c'], 2).includes('c'));
    expect(released.reduce((x, y) => x + y, 0)).toBe(moved.length);
  }, 90_000);
});

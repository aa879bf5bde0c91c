import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import pino from 'pino';
import { firstValueFrom, filter } from 'rxjs';
import type { Position, Projection, ProjectionStore, ShoalEvent } from '../../domain';
import { ShoalError, isShoalError } from '../../domain';
import { createMemoryEventLog } from '../../adapters/eventlog/memory/memoryEventLog';
import {
  createMemoryProjectionStore,
  openSqliteProjectionStore,
} from '../../adapters/projection-store';
import type { BlobDoc, TagChangeDoc, TagDoc } from '../../projections';
import {
  blobIndexProjection,
  blobPartition,
  buildIndexProjection,
  changeAsOf,
  historyPartition,
  tagHistoryProjection,
} from '../../projections';
import {
  blobUploaded,
  randomDigest,
  randomRepo,
  tagDeleted,
  tagPushed,
  testMetadata,
} from '../../test/fixtures/events';
import type { ProjectionRunner } from './projectionRunner';
import { createProjectionRunner } from './projectionRunner';
import { rebuildProjection } from './rebuildProjection';
import { verifyProjection } from './verifyProjection';

const all = [buildIndexProjection, tagHistoryProjection, blobIndexProjection] as Projection[];

/** Every runner and resource a test opens, closed after it in reverse order. */
const cleanups: Array<() => Promise<void> | void> = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

const tempDir = () => {
  const dir = mkdtempSync(join(tmpdir(), 'shoal-runner-'));
  cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
};

const memoryLog = () => {
  const log = createMemoryEventLog();
  cleanups.push(() => log.close());
  return log;
};

const sqliteStore = (path: string) => {
  const store = openSqliteProjectionStore(path);
  cleanups.push(() => store.close());
  return store;
};

const runner = (options: Parameters<typeof createProjectionRunner>[0]): ProjectionRunner => {
  const created = createProjectionRunner(options);
  cleanups.push(() => created.stop());
  return created;
};

/** A pino logger whose records the test can read. */
const capturingLogger = () => {
  const records: Array<{ level: number; msg: string; err?: { message: string } }> = [];
  const logger = pino(
    { level: 'debug' },
    { write: (line: string) => records.push(JSON.parse(line)) },
  );
  return { logger, records };
};

/**
 * A projection that counts: one document per partition `counts`, id = the projection name,
 * whose `n` is the number of TagPushed events applied, plus a tally of `evolve` calls.
 * Applying an event twice, or skipping one, shows as a wrong count.
 */
const countingProjection = (name = 'counting', version = 1) => {
  const calls = { evolve: 0 };
  const projection: Projection<{ n: number; last: Position }> = {
    name,
    version,
    eventTypes: ['TagPushed'],
    keysOf: () => [{ partition: 'counts', id: name }],
    evolve: (doc, event) => {
      calls.evolve += 1;
      return { n: (doc?.n ?? 0) + 1, last: event.position };
    },
  };
  return { projection: projection as Projection, calls, key: { partition: 'counts', id: name } };
};

/** Wraps a projection to count `evolve` calls per event position. */
const tallied = (inner: Projection, version = inner.version) => {
  const seen = new Map<Position, number>();
  const projection: Projection = {
    ...inner,
    version,
    evolve: (doc, event, key) => {
      seen.set(event.position, (seen.get(event.position) ?? 0) + 1);
      return inner.evolve(doc, event, key);
    },
  };
  return { projection, seen };
};

const pushes = (count: number, repo = randomRepo()): ShoalEvent[] =>
  Array.from({ length: count }, (_, i) => tagPushed({ repo, tag: `t${i}` }));

const rejection = async (promise: Promise<unknown>): Promise<unknown> => {
  try {
    await promise;
  } catch (error) {
    return error;
  }
  throw new Error('expected a rejection, got a result');
};

describe('projection runner', () => {
  it('applies events to build-index, tag-history and blob-index', async () => {
    const log = memoryLog();
    const store = createMemoryProjectionStore();
    const repo = randomRepo();
    const digest = randomDigest();
    const head = await log.append([
      blobUploaded({ digest, size: 321, repo }),
      tagPushed({ repo, tag: 'v1', digest }),
    ]);
    const projections = runner({ log, store, projections: all });
    projections.start();
    await projections.waitFor(head, 5000);

    expect(await store.get<TagDoc>('build-index', { partition: repo, id: 'v1' })).toMatchObject({
      digest,
      position: 2,
    });
    const history = await store.list<TagChangeDoc>('tag-history', historyPartition(repo, 'v1'));
    expect(history.map((row) => row.doc)).toMatchObject([{ kind: 'pushed', digest, position: 2 }]);
    expect(
      await store.get<BlobDoc>('blob-index', { partition: blobPartition, id: digest }),
    ).toEqual({ size: 321, repos: [repo], origins: [], backends: [] });
    expect(projections.position()).toBe(head);
    for (const name of ['build-index', 'tag-history', 'blob-index']) {
      expect(await store.checkpoint(name)).toBe(head);
      expect(projections.position(name)).toBe(head);
    }
  });

  describe('given a tag pushed, moved and deleted', () => {
    const scenario = async () => {
      const log = memoryLog();
      const store = createMemoryProjectionStore();
      const projections = runner({ log, store, projections: all });
      projections.start();
      const repo = randomRepo();
      const [first, second] = [randomDigest(), randomDigest()];
      const step = async (event: ShoalEvent) => {
        const position = await log.append([event]);
        await projections.waitFor(position, 5000);
        return store.get<TagDoc>('build-index', { partition: repo, id: 'v1' });
      };
      const at = (minute: number) => testMetadata({ at: `2026-03-01T10:0${minute}:00.000Z` });
      return { log, store, repo, first, second, step, at };
    };

    it('then build-index follows each step', async () => {
      const { repo, first, second, step, at } = await scenario();
      expect(await step(tagPushed({ repo, tag: 'v1', digest: first, metadata: at(1) }))).toEqual({
        digest: first,
        position: 1,
        at: '2026-03-01T10:01:00.000Z',
      });
      expect(
        await step(
          tagPushed({ repo, tag: 'v1', digest: second, previous: first, metadata: at(2) }),
        ),
      ).toMatchObject({ digest: second, position: 2 });
      expect(await step(tagDeleted({ repo, tag: 'v1', previous: second, metadata: at(3) }))).toBe(
        undefined,
      );
    });

    it('then tag-history holds every change, and answers as of a position or a time', async () => {
      const { store, repo, first, second, step, at } = await scenario();
      await step(tagPushed({ repo, tag: 'v1', digest: first, metadata: at(1) }));
      await step(tagPushed({ repo, tag: 'v1', digest: second, previous: first, metadata: at(2) }));
      await step(tagDeleted({ repo, tag: 'v1', previous: second, metadata: at(3) }));

      const rows = await store.list<TagChangeDoc>('tag-history', historyPartition(repo, 'v1'));
      const history = rows.map((row) => row.doc);
      expect(history.map((c) => [c.kind, c.position, c.digest, c.previous])).toEqual([
        ['pushed', 1, first, undefined],
        ['pushed', 2, second, first],
        ['deleted', 3, undefined, second],
      ]);
      expect(changeAsOf(history, { position: 1 })?.digest).toBe(first);
      expect(changeAsOf(history, { position: 2 })?.digest).toBe(second);
      expect(changeAsOf(history, { time: Date.parse('2026-03-01T10:01:30Z') })?.digest).toBe(first);
      expect(changeAsOf(history, { time: Date.parse('2026-03-01T10:09:00Z') })?.kind).toBe(
        'deleted',
      );
      const latest = await store.list<TagChangeDoc>('tag-history', historyPartition(repo, 'v1'), {
        reverse: true,
        limit: 1,
      });
      expect(latest[0]?.doc.kind).toBe('deleted');
    });
  });

  describe('waitFor', () => {
    it('resolves once the position is applied, and at once when it already is', async () => {
      const log = memoryLog();
      const store = createMemoryProjectionStore();
      const projections = runner({ log, store, projections: all });
      projections.start();
      const position = await log.append(pushes(3));
      await projections.waitFor(position, 5000);
      expect(projections.position()).toBeGreaterThanOrEqual(position);
      await projections.waitFor(1, 0);
      await projections.waitFor(0, 0);
    });

    it('rejects with POSITION_NOT_REACHED after the timeout, naming both positions', async () => {
      const log = memoryLog();
      const store = createMemoryProjectionStore();
      const projections = runner({ log, store, projections: all });
      projections.start();
      const head = await log.append(pushes(2));
      await projections.waitFor(head, 5000);

      const error = await rejection(projections.waitFor(head + 5, 30));
      expect(isShoalError(error, 'POSITION_NOT_REACHED')).toBe(true);
      expect((error as ShoalError).retriable).toBe(true);
      expect((error as Error).message).toContain(`position ${head + 5} within 30 ms`);
      expect((error as Error).message).toContain(`at ${head}`);
      expect((error as Error).message).toContain(`build-index ${head}`);
      expect((error as ShoalError).detail).toMatchObject({ wanted: head + 5, current: head });
    });

    it('waits for one named projection when asked to', async () => {
      const log = memoryLog();
      const store = createMemoryProjectionStore();
      const projections = runner({ log, store, projections: all });
      projections.start();
      const head = await log.append(pushes(1));
      await projections.waitFor(head, 5000, 'build-index');
      expect(projections.position('build-index')).toBe(head);
      await expect(projections.waitFor(head, 10, 'nope')).rejects.toMatchObject({
        code: 'PROJECTION_UNKNOWN',
      });
    });

    it('rejects pending waits when the runner stops', async () => {
      const log = memoryLog();
      const store = createMemoryProjectionStore();
      const projections = runner({ log, store, projections: all });
      projections.start();
      const waiting = rejection(projections.waitFor(1000, 60_000));
      await projections.stop();
      expect(isShoalError(await waiting, 'POSITION_NOT_REACHED')).toBe(true);
    });

    it('sees a single live event applied within milliseconds', async () => {
      const log = memoryLog();
      const store = createMemoryProjectionStore();
      const projections = runner({ log, store, projections: all });
      projections.start();
      await projections.waitFor(await log.append(pushes(1)), 5000);
      const latencies: number[] = [];
      for (let i = 0; i < 20; i++) {
        const started = performance.now();
        await projections.waitFor(await log.append(pushes(1)), 5000);
        latencies.push(performance.now() - started);
      }
      latencies.sort((a, b) => a - b);
      // Generous bound for loaded CI machines; typically well under 1 ms.
      expect(latencies[10]).toBeLessThan(50);
    });
  });

  it('publishes positions on positions$', async () => {
    const log = memoryLog();
    const store = createMemoryProjectionStore();
    const projections = runner({ log, store, projections: all });
    const head = await log.append(pushes(4));
    const reached = firstValueFrom(
      projections.positions$.pipe(filter((p) => Object.values(p).every((at) => at === head))),
    );
    projections.start();
    expect(await reached).toEqual({ 'build-index': head, 'tag-history': head, 'blob-index': head });
  });

  it('resumes from its checkpoint after a restart, applying nothing twice', async () => {
    const log = memoryLog();
    const store = createMemoryProjectionStore();
    const { projection, seen } = tallied(buildIndexProjection as Projection);

    const first = createProjectionRunner({ log, store, projections: [projection] });
    first.start();
    await first.waitFor(await log.append(pushes(10)), 5000);
    await first.stop();
    const head = await log.append(pushes(7));

    const second = runner({ log, store, projections: [projection] });
    second.start();
    await second.waitFor(head, 5000);
    expect([...seen.keys()].sort((a, b) => a - b)).toEqual(
      Array.from({ length: head }, (_, i) => i + 1),
    );
    expect([...seen.values()].every((n) => n === 1)).toBe(true);
  });

  it('catches up in pages when far behind, then follows live', async () => {
    const log = memoryLog();
    const store = createMemoryProjectionStore();
    const { projection, calls, key } = countingProjection();
    const projections = runner({ log, store, projections: [projection], batchSize: 50 });
    projections.start();
    await projections.waitFor(await log.append(pushes(1)), 5000);
    // More than the live queue holds (4 batches): the runner must fall back to pages.
    await log.append(pushes(1000));
    const head = await log.append(pushes(3));
    await projections.waitFor(head, 10_000);
    expect(await store.get(projection.name, key)).toEqual({ n: head, last: head });
    expect(calls.evolve).toBe(head);
  });

  it('retries with backoff after a failure, logging it, and loses nothing', async () => {
    const log = memoryLog();
    const inner = createMemoryProjectionStore();
    let failures = 2;
    const store: ProjectionStore = {
      ...inner,
      commit: async (projection, batch) => {
        if (failures > 0) {
          failures -= 1;
          throw new ShoalError('SERVICE_UNAVAILABLE', 'disk on fire');
        }
        return inner.commit(projection, batch);
      },
    };
    const { logger, records } = capturingLogger();
    const { projection, key } = countingProjection();
    const projections = runner({
      log,
      store,
      projections: [projection],
      logger,
      minBackoffMs: 1,
      maxBackoffMs: 5,
    });
    projections.start();
    const head = await log.append(pushes(5));
    await projections.waitFor(head, 5000);
    expect(await inner.get(projection.name, key)).toEqual({ n: 5, last: head });
    const errors = records.filter((r) => r.level >= 50);
    expect(errors).toHaveLength(2);
    expect(errors[0]).toMatchObject({
      msg: 'projection runner failed; retrying',
      err: { message: 'disk on fire' },
    });
  });

  it('catchUp applies everything up to the head without start (the CLI path)', async () => {
    const log = memoryLog();
    const store = createMemoryProjectionStore();
    const repo = randomRepo();
    const head = await log.append([...pushes(3, repo), tagDeleted({ repo, tag: 't0' })]);
    const projections = runner({ log, store, projections: all, batchSize: 2 });
    expect(await projections.catchUp()).toBe(head);
    expect((await store.list('build-index', repo)).map((row) => row.id)).toEqual(['t1', 't2']);
    const later = await log.append(pushes(2, repo));
    expect(await projections.catchUp()).toBe(later);
    // And with the runner started, it waits for it.
    projections.start();
    const last = await log.append(pushes(1, repo));
    expect(await projections.catchUp()).toBeGreaterThanOrEqual(last);
  });

  it('rebuilds a projection whose reducer changed version', async () => {
    const log = memoryLog();
    const store = createMemoryProjectionStore();
    const repo = randomRepo();
    const v1 = tallied(buildIndexProjection as Projection, 1);
    const first = createProjectionRunner({ log, store, projections: [v1.projection] });
    first.start();
    await first.waitFor(await log.append(pushes(4, repo)), 5000);
    await first.stop();
    const head = await log.append(pushes(2, repo));

    // Version 2 stores the digest only: every document must come out in the new shape.
    const v2 = tallied(
      {
        ...(buildIndexProjection as Projection),
        evolve: (doc, event, key) => {
          const next = buildIndexProjection.evolve(doc as TagDoc | undefined, event, key);
          return next === undefined ? undefined : { digest: next.digest };
        },
      },
      2,
    );
    const { logger, records } = capturingLogger();
    const second = runner({ log, store, projections: [v2.projection], logger });
    second.start();
    await second.waitFor(head, 5000);
    expect(await store.storedVersion('build-index')).toBe(2);
    const docs = await store.list<Record<string, unknown>>('build-index', repo);
    expect(docs.map((row) => row.id)).toEqual(['t0', 't1', 't2', 't3']);
    expect(docs.every((row) => Object.keys(row.doc).join() === 'digest')).toBe(true);
    expect([...v2.seen.keys()].sort((a, b) => a - b)).toEqual([1, 2, 3, 4, 5, 6]);
    expect(records.some((r) => /changed version/.test(r.msg))).toBe(true);
  });
});

describe('projection runner on a shared SQLite store', () => {
  it('two runners sharing one store never apply an event twice', async () => {
    const path = join(tempDir(), 'projections.db');
    const log = memoryLog();
    const [storeA, storeB] = [sqliteStore(path), sqliteStore(path)];
    const a = countingProjection();
    const b = countingProjection();
    const runnerA = runner({ log, store: storeA, projections: [a.projection], batchSize: 7 });
    const runnerB = runner({ log, store: storeB, projections: [b.projection], batchSize: 7 });
    runnerA.start();
    runnerB.start();
    let head = 0;
    for (let i = 0; i < 40; i++) {
      head = await log.append(pushes(1 + (i % 5)));
      if (i % 10 === 0) await runnerA.waitFor(head, 5000);
    }
    await Promise.all([runnerA.waitFor(head, 10_000), runnerB.waitFor(head, 10_000)]);
    expect(await storeA.get(a.projection.name, a.key)).toEqual({ n: head, last: head });
    expect(await storeA.checkpoint(a.projection.name)).toBe(head);
    // Both raced for the same batches (the loser's work is thrown away, never stored).
    expect(a.calls.evolve).toBeGreaterThan(0);
    expect(b.calls.evolve).toBeGreaterThan(0);
    expect(a.calls.evolve + b.calls.evolve).toBeGreaterThan(head);
  });
});

describe('rebuildProjection and verifyProjection', () => {
  const seeded = async () => {
    const log = memoryLog();
    const path = join(tempDir(), 'projections.db');
    const store = sqliteStore(path);
    const repos = [randomRepo(), randomRepo()];
    const events: ShoalEvent[] = [];
    for (let i = 0; i < 60; i++) {
      const repo = repos[i % 2] as string;
      events.push(tagPushed({ repo, tag: `t${i % 9}` }));
      if (i % 7 === 0) events.push(tagDeleted({ repo, tag: `t${i % 4}` }));
      if (i % 5 === 0) events.push(blobUploaded({ repo }));
    }
    const head = await log.append(events);
    const projections = runner({ log, store, projections: all, batchSize: 16 });
    projections.start();
    await projections.waitFor(head, 5000);
    await projections.stop();
    return { log, store, head, repos, path };
  };

  it('rebuild replays the log into the same state', async () => {
    const { log, store, head } = await seeded();
    for (const projection of all) {
      const before = await store.digest(projection.name);
      const result = await rebuildProjection({ log, store, projection, pageSize: 10 });
      expect(result).toMatchObject({ events: head, position: head });
      expect(result.ms).toBeGreaterThanOrEqual(0);
      expect(await store.digest(projection.name)).toBe(before);
      expect(await store.checkpoint(projection.name)).toBe(head);
      expect(await store.storedVersion(projection.name)).toBe(projection.version);
    }
  });

  it('rebuild commits along the way when many documents change, with the same result', async () => {
    const { log, store } = await seeded();
    const before = await store.digest('tag-history');
    await rebuildProjection({
      log,
      store,
      projection: tagHistoryProjection as Projection,
      pageSize: 8,
      flushDocs: 3,
      cacheDocs: 5,
    });
    expect(await store.digest('tag-history')).toBe(before);
  });

  it('verify finds the live state equal to a replay, then spots a corrupted document', async () => {
    const { log, store, head, repos, path } = await seeded();
    const scratch = createMemoryProjectionStore();
    cleanups.push(() => scratch.close());
    const projection = buildIndexProjection as Projection;

    const ok = await verifyProjection({ log, store, projection, scratch });
    expect(ok).toMatchObject({ position: head, equal: true });
    expect(ok.live).toBe(ok.rebuilt);

    // Corrupt one document behind the runner's back, as a bad disk or a bad hand would.
    const [row] = await store.list<TagDoc>('build-index', repos[0] as string, { limit: 1 });
    const file = new Database(path);
    try {
      file
        .prepare('UPDATE docs SET doc = ? WHERE projection = ? AND partition = ? AND id = ?')
        .run(
          JSON.stringify({ ...row?.doc, digest: randomDigest() }),
          'build-index',
          repos[0],
          row?.id,
        );
    } finally {
      file.close();
    }
    const bad = await verifyProjection({ log, store, projection, scratch });
    expect(bad).toMatchObject({ position: head, equal: false, rebuilt: ok.rebuilt });
    expect(bad.live).not.toBe(ok.live);
  });

  it('verify first brings the live state up to the head of the log', async () => {
    const { log, store, head } = await seeded();
    const later = await log.append(pushes(5));
    expect(later).toBeGreaterThan(head);
    const scratch = createMemoryProjectionStore();
    const projection = tagHistoryProjection as Projection;
    const result = await verifyProjection({ log, store, projection, scratch });
    expect(result).toMatchObject({ position: later, equal: true });
    expect(await store.checkpoint(projection.name)).toBe(later);
  });

  it('verify refuses live state built by another version of the reducer', async () => {
    const { log, store } = await seeded();
    const projection = { ...(buildIndexProjection as Projection), version: 9 };
    const scratch = createMemoryProjectionStore();
    await expect(verifyProjection({ log, store, projection, scratch })).rejects.toThrow(
      /rebuild it/,
    );
  });
});

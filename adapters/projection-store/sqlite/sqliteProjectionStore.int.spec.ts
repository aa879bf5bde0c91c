import { existsSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import type { ProjectionStore } from '../../../domain';
import { isShoalError } from '../../../domain';
import { openSqliteEventLog } from '../../eventlog';
import { describeProjectionStoreContract } from '../../../test/contracts/projectionStoreContract';
import { createMemoryProjectionStore } from '../memory/memoryProjectionStore';
import {
  createSqliteProjectionStore,
  openSqliteProjectionStore,
  sqliteProjectionStoreMagic,
} from './sqliteProjectionStore';
import { sha256 } from '../../../test/fixtures/blobs';

const tempDir = () => mkdtempSync(join(tmpdir(), 'shoal-projections-'));

describeProjectionStoreContract(
  'sqlite',
  async () => {
    const dir = tempDir();
    const path = join(dir, 'projections.db');
    return {
      store: openSqliteProjectionStore(path),
      reopen: async () => openSqliteProjectionStore(path),
      dispose: async () => rmSync(dir, { recursive: true, force: true }),
    };
  },
  { persistent: true },
);

describeProjectionStoreContract('sqlite on an injected in-memory database', async () => {
  const db = new Database(':memory:');
  return {
    store: createSqliteProjectionStore(db),
    dispose: async () => {
      db.close();
    },
  };
});

describe('sqlite ProjectionStore files', () => {
  let dir: string;
  beforeEach(() => {
    dir = tempDir();
  });
  afterEach(() => rmSync(dir, { recursive: true, force: true }));

  const fingerprint = (path: string) => sha256(readFileSync(path));

  /**
   * Opening `path` as a projection store fails with DATA_DIR_INVALID and changes nothing: the
   * file's bytes are the same and no file appears, except that reading a WAL-mode database
   * (the log) through a read-only connection leaves SQLite's `-wal`/`-shm` side files.
   */
  const expectRefused = (path: string, why: RegExp) => {
    const before = fingerprint(path);
    const listing = () =>
      readdirSync(dir)
        .filter((f) => !/-(wal|shm)$/.test(f))
        .sort();
    const files = listing();
    let error: unknown;
    try {
      openSqliteProjectionStore(path);
    } catch (caught) {
      error = caught;
    }
    expect(isShoalError(error, 'DATA_DIR_INVALID')).toBe(true);
    expect((error as Error).message).toMatch(why);
    expect((error as Error).message).toMatch(/left untouched/);
    expect(fingerprint(path)).toBe(before);
    expect(listing()).toEqual(files);
  };

  it('creates the file, marks it as a projection store and uses WAL', async () => {
    const path = join(dir, 'projections.db');
    const store = openSqliteProjectionStore(path);
    await store.commit('p', { from: 0, to: 1, version: 1, changes: [] });
    await store.close();
    const db = new Database(path, { readonly: true });
    try {
      expect(db.pragma('journal_mode', { simple: true })).toBe('wal');
      const meta = new Map(
        db.prepare('SELECT key, value FROM meta').raw().all() as [string, string][],
      );
      expect(meta.get('magic')).toBe(sqliteProjectionStoreMagic);
      expect(meta.get('format')).toBe('1');
    } finally {
      db.close();
    }
  });

  it('refuses a SQLite file of another application', () => {
    const path = join(dir, 'app.db');
    const db = new Database(path);
    db.exec("CREATE TABLE users (name TEXT); INSERT INTO users VALUES ('ada')");
    db.close();
    const files = readdirSync(dir);
    expectRefused(path, /tables users and no meta/);
    expect(readdirSync(dir)).toEqual(files);
  });

  it('refuses the Shoal event log', async () => {
    const path = join(dir, 'log.db');
    const log = openSqliteEventLog(path);
    await log.close();
    expectRefused(path, /meta\.magic is "shoal-event-log"/);
  });

  it('refuses a file that is not a SQLite database', () => {
    const path = join(dir, 'notes.txt');
    writeFileSync(path, 'these are not the tables you are looking for\n'.repeat(100));
    expectRefused(path, /not a SQLite database/);
  });

  it('refuses a projection store of a newer format', async () => {
    const path = join(dir, 'projections.db');
    await openSqliteProjectionStore(path).close();
    const db = new Database(path);
    db.prepare("UPDATE meta SET value = '99' WHERE key = 'format'").run();
    db.pragma('journal_mode = DELETE');
    db.close();
    expectRefused(path, /newer Shoal/);
  });

  it('refuses, through an injected handle too, a database that is not a store', () => {
    const db = new Database(':memory:');
    try {
      db.exec('CREATE TABLE t (x)');
      expect(() => createSqliteProjectionStore(db)).toThrow(/not a Shoal projection store/);
      expect(db.prepare('SELECT name FROM sqlite_schema').pluck().all()).toEqual(['t']);
    } finally {
      db.close();
    }
  });

  it('fails with a ShoalError, creating nothing, when the directory does not exist', () => {
    const path = join(dir, 'missing', 'projections.db');
    let error: unknown;
    try {
      openSqliteProjectionStore(path);
    } catch (caught) {
      error = caught;
    }
    expect(isShoalError(error)).toBe(true);
    expect(existsSync(path)).toBe(false);
  });

  it('gives the same digest as the memory store for the same documents', async () => {
    const stores: ProjectionStore[] = [
      openSqliteProjectionStore(join(dir, 'projections.db')),
      createMemoryProjectionStore(),
    ];
    const changes = Array.from({ length: 500 }, (_, i) => ({
      key: { partition: `repo-${i % 7}`, id: `tag-${(i * 31) % 97}` },
      doc: i % 11 === 0 ? undefined : { n: i, z: 'last', a: ['first', { y: 1, b: 2 }] },
    }));
    const digests: string[] = [];
    for (const store of stores) {
      await store.commit('p', { from: 0, to: 500, version: 1, changes });
      digests.push(await store.digest('p'));
      await store.close();
    }
    expect(digests[0]).toBe(digests[1]);
  });

  it('shares one file between handles: a commit on one is seen by the other', async () => {
    const path = join(dir, 'projections.db');
    const [a, b] = [openSqliteProjectionStore(path), openSqliteProjectionStore(path)];
    try {
      await a.commit('p', { from: 0, to: 2, version: 1, changes: [] });
      expect(await b.checkpoint('p')).toBe(2);
      expect(await b.commit('p', { from: 0, to: 3, version: 1, changes: [] })).toBe(false);
      expect(await b.commit('p', { from: 2, to: 3, version: 1, changes: [] })).toBe(true);
      expect(await a.checkpoint('p')).toBe(3);
    } finally {
      await a.close();
      await b.close();
    }
  });
});

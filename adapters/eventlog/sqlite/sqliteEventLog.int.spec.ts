import { randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import type { EventLog } from '../../../domain';
import { isShoalError } from '../../../domain';
import { describeEventLogContract } from '../../../test/contracts/eventLogContract';
import { spawnEventLogWorker } from '../../../test/fixtures/eventLogWorker';
import { tagHistory, tagPushed } from '../../../test/fixtures/events';
import { createSqliteEventLog, openSqliteEventLog } from './sqliteEventLog';
import { sha256 } from '../../../test/fixtures/blobs';

let dir: string;
beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'shoal-sqlite-log-'));
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const freshPath = () => join(dir, `log-${randomBytes(6).toString('hex')}.db`);

describeEventLogContract(
  'sqlite',
  async () => {
    const path = freshPath();
    // Small pages so catch-up and read cross many page boundaries.
    const options = { pageSize: 64 };
    return {
      log: openSqliteEventLog(path, options),
      location: path,
      reopen: async () => openSqliteEventLog(path, options),
      dispose: async () => {
        for (const suffix of ['', '-wal', '-shm']) rmSync(`${path}${suffix}`, { force: true });
      },
    };
  },
  {
    densePositions: true,
    // Nominal: one poll interval (25 ms) and a page read; the rest is slack for a busy CI host.
    liveDelayMs: 1000,
    persistent: true,
    multiProcess: {
      spawnWorker: (location, job) => spawnEventLogWorker('sqlite', location, job),
    },
    crashSafety: true,
  },
);

const fingerprint = (path: string) => sha256(readFileSync(path));

const openError = (path: string): unknown => {
  try {
    openSqliteEventLog(path).close();
  } catch (error) {
    return error;
  }
  throw new Error(`opened ${path}`);
};

describe('sqlite EventLog files', () => {
  let logs: EventLog[] = [];
  afterEach(async () => {
    await Promise.all(logs.map((log) => log.close()));
    logs = [];
  });
  const open = (path: string, options = {}) => {
    const log = openSqliteEventLog(path, options);
    logs.push(log);
    return log;
  };

  it('creates a new file with the meta row, and keeps its data across reopen', async () => {
    const path = freshPath();
    const log = open(path);
    const history = tagHistory(3);
    await log.append(history);
    await log.close();
    const db = new Database(path, { readonly: true });
    expect(db.prepare('SELECT key, value FROM meta ORDER BY key').raw().all()).toEqual([
      ['format', '2'],
      ['magic', 'shoal-event-log'],
    ]);
    expect(db.pragma('journal_mode', { simple: true })).toBe('wal');
    db.close();
    const again = open(path, { durability: 'normal' });
    expect((await again.readBatch(1)).map((e) => e.id)).toEqual(history.map((e) => e.id));
  });

  it('refuses a file of random bytes and leaves it as it was', () => {
    const path = freshPath();
    writeFileSync(path, randomBytes(64 * 1024));
    const before = fingerprint(path);
    const error = openError(path);
    expect(isShoalError(error, 'DATA_DIR_INVALID')).toBe(true);
    expect((error as Error).message).toMatch(/not a Shoal event log.*not a SQLite database/);
    expect(fingerprint(path)).toBe(before);
  });

  it('refuses a SQLite database of another program and leaves it as it was', () => {
    const path = freshPath();
    const other = new Database(path);
    other.pragma('journal_mode = WAL');
    other.exec("CREATE TABLE users (name TEXT); INSERT INTO users VALUES ('ada')");
    // Keep a frame in the WAL: a careless open would checkpoint it into the main file.
    other.pragma('wal_autocheckpoint = 0');
    other.exec("INSERT INTO users VALUES ('grace')");
    // The database and its WAL; not the -shm wal-index, where every reader marks its place.
    const files = () =>
      readdirSync(dir)
        .filter((name) => name.startsWith(path.slice(dir.length + 1)) && !name.endsWith('-shm'))
        .sort()
        .map((name) => [name, fingerprint(join(dir, name))]);
    const before = files();
    const error = openError(path);
    expect(isShoalError(error, 'DATA_DIR_INVALID')).toBe(true);
    expect((error as Error).message).toContain('users');
    expect(files()).toEqual(before);
    expect(other.prepare('SELECT count(*) FROM users').pluck().get()).toBe(2);
    other.close();
  });

  it('refuses a Shoal log of a newer format', () => {
    const path = freshPath();
    open(path);
    const db = new Database(path);
    db.prepare("UPDATE meta SET value = '99' WHERE key = 'format'").run();
    db.close();
    const before = fingerprint(path);
    const error = openError(path);
    expect(isShoalError(error, 'DATA_DIR_INVALID')).toBe(true);
    expect((error as Error).message).toContain('newer');
    expect(fingerprint(path)).toBe(before);
  });

  it('refuses a Shoal log of the older format 1, naming it, and leaves it as it was', () => {
    const path = freshPath();
    open(path);
    const db = new Database(path);
    db.prepare("UPDATE meta SET value = '1' WHERE key = 'format'").run();
    db.close();
    const before = fingerprint(path);
    const error = openError(path);
    expect(isShoalError(error, 'DATA_DIR_INVALID')).toBe(true);
    expect((error as Error).message).toContain('older format (log format 1');
    expect(fingerprint(path)).toBe(before);
  });

  it('reports a damaged log as LOG_CORRUPT and does not change it', async () => {
    const path = freshPath();
    const log = open(path);
    for (let i = 0; i < 20; i++) await log.append(Array.from({ length: 50 }, () => tagPushed()));
    await log.close();
    // Checkpoint everything into the main file, then smash the events table's pages.
    const db = new Database(path);
    db.pragma('wal_checkpoint(TRUNCATE)');
    const root = db
      .prepare("SELECT rootpage FROM sqlite_schema WHERE name = 'events'")
      .pluck()
      .get() as number;
    db.close();
    const bytes = readFileSync(path);
    const pageSize = bytes.readUInt16BE(16);
    bytes.fill(0xa5, (root - 1) * pageSize, root * pageSize);
    writeFileSync(path, bytes);
    const before = fingerprint(path);
    const error = openError(path);
    expect(isShoalError(error, 'LOG_CORRUPT')).toBe(true);
    expect(fingerprint(path)).toBe(before);
  });

  it('reports an undecodable event as LOG_CORRUPT naming its position', async () => {
    const path = freshPath();
    const log = open(path);
    await log.append(tagHistory(3));
    const db = new Database(path);
    db.prepare("UPDATE events SET event = '{broken' WHERE position = 2").run();
    db.close();
    const error = await log.readBatch(1).catch((e: unknown) => e);
    expect(error).toMatchObject({ code: 'LOG_CORRUPT', detail: { position: 2 } });
    expect(await log.readBatch(3)).toHaveLength(1);
  });

  it('fails with DATA_DIR_INVALID when the directory does not exist', () => {
    const error = openError(join(dir, 'missing', 'log.db'));
    expect(isShoalError(error, 'DATA_DIR_INVALID')).toBe(true);
  });

  it('refuses a database injected by the caller when it holds something else', () => {
    const db = new Database(':memory:');
    db.exec('CREATE TABLE t (x)');
    expect(() => createSqliteEventLog(db)).toThrow(
      expect.objectContaining({ code: 'DATA_DIR_INVALID' }),
    );
    db.close();
  });

  it('works on an injected in-memory database and leaves it open on close', async () => {
    const db = new Database(':memory:');
    const log = createSqliteEventLog(db);
    expect(await log.append(tagHistory(2))).toBe(2);
    await log.close();
    expect(db.open).toBe(true);
    db.close();
  });

  it('turns a writer lock held past busy_timeout into a retriable LOG_UNAVAILABLE', async () => {
    const path = freshPath();
    const log = open(path, { busyTimeoutMs: 50 });
    await log.append([tagPushed()]);
    const blocker = new Database(path);
    blocker.exec('BEGIN IMMEDIATE');
    try {
      const error = await log.append([tagPushed()]).catch((e: unknown) => e);
      expect(error).toMatchObject({ code: 'LOG_UNAVAILABLE', retriable: true });
    } finally {
      blocker.exec('ROLLBACK');
      blocker.close();
    }
    expect(await log.append([tagPushed()])).toBe(2);
  });
});

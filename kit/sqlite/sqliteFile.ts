import { existsSync } from 'node:fs';
import Database from 'better-sqlite3';
import type { ErrorCode } from '../../domain';
import { ShoalError } from '../../domain';
import type { SqliteFileErrors } from './sqliteErrors';
import { sqliteCode, translateSqliteError } from './sqliteErrors';

export type SqliteDatabase = Database.Database;

/**
 * One kind of Shoal SQLite file (the event log, the projection store). Each holds a `meta`
 * table with `magic` and `format`: a file without them is not opened, let alone changed.
 */
export type SqliteFileFormat = {
  readonly errors: SqliteFileErrors;
  readonly magic: string;
  /** The format this code writes and reads; older and newer files are refused. */
  readonly format: number;
  /** The format's name in messages: `log` gives "log format 2". */
  readonly formatName: string;
  /** `PRAGMA application_id`, so that `file(1)` and other tools recognize the file. */
  readonly applicationId: number;
  /** The tables besides `meta`, created in an empty file. */
  readonly schema: string;
  /** Tables a file of this kind must hold. */
  readonly tables: readonly string[];
  /** The code for a file of this kind that cannot be read: a table missing, a bad format. */
  readonly damaged: ErrorCode;
  /** A read that touches the main b-tree, so that a damaged file is caught when opened. */
  readonly probe?: string;
};

const notOurs = (kind: SqliteFileFormat, where: string, why: string, cause?: unknown) =>
  new ShoalError(
    'DATA_DIR_INVALID',
    `${where} is not a Shoal ${kind.errors.what} (${why}); it was left untouched`,
    { cause, detail: { path: where } },
  );

/**
 * What a database holds: nothing yet, or a file of this kind in the format this code reads.
 * Anything else throws before a single byte is written: `DATA_DIR_INVALID` for a file that is
 * not of this kind or is of another format, `kind.damaged` for one that cannot be read.
 */
const inspect = (kind: SqliteFileFormat, db: SqliteDatabase, where: string): 'empty' | 'ours' => {
  let objects: { type: string; name: string }[];
  try {
    objects = db.prepare('SELECT type, name FROM sqlite_schema').all() as typeof objects;
  } catch (error) {
    if (sqliteCode(error) === 'SQLITE_NOTADB') {
      throw notOurs(kind, where, 'not a SQLite database', error);
    }
    throw translateSqliteError(kind.errors, error, `opening ${where}`);
  }
  if (objects.length === 0) return 'empty';
  const tables = objects.filter((o) => o.type === 'table').map((o) => o.name);
  if (!tables.includes('meta')) {
    throw notOurs(kind, where, `a SQLite database with tables ${tables.join(', ')} and no meta`);
  }
  let meta: Map<string, string>;
  try {
    meta = new Map(db.prepare('SELECT key, value FROM meta').raw().all() as [string, string][]);
  } catch (error) {
    throw notOurs(kind, where, 'its meta table is not Shoal’s', error);
  }
  if (meta.get('magic') !== kind.magic) {
    throw notOurs(kind, where, `meta.magic is ${JSON.stringify(meta.get('magic') ?? null)}`);
  }
  const stored = meta.get('format');
  const format = Number(stored);
  if (!Number.isSafeInteger(format) || format < 1) {
    throw new ShoalError(
      kind.damaged,
      `${where}: unreadable ${kind.formatName} format ${JSON.stringify(stored ?? null)}`,
      { detail: { path: where } },
    );
  }
  if (format < kind.format) {
    throw new ShoalError(
      'DATA_DIR_INVALID',
      `${where} holds a Shoal ${kind.errors.what} of an older format (${kind.formatName} ` +
        `format ${format}; this Shoal reads ${kind.format} only and does not migrate it); ` +
        'it was left untouched',
      { detail: { path: where, format } },
    );
  }
  if (format > kind.format) {
    throw new ShoalError(
      'DATA_DIR_INVALID',
      `${where} was written by a newer Shoal (${kind.formatName} format ${format}; this one ` +
        `reads ${kind.format}); it was left untouched`,
      { detail: { path: where, format } },
    );
  }
  for (const table of kind.tables) {
    if (!tables.includes(table)) {
      throw new ShoalError(kind.damaged, `${where}: the ${table} table is missing`, {
        detail: { path: where },
      });
    }
  }
  if (kind.probe !== undefined) {
    try {
      db.prepare(kind.probe).get();
    } catch (error) {
      throw translateSqliteError(kind.errors, error, `opening ${where}`);
    }
  }
  return 'ours';
};

/**
 * Creates the file's tables in an empty database, or checks that it holds a file of this
 * kind (see `inspect`). For a database the caller opened (tests inject one); `openSqliteFile`
 * does this for a path.
 */
export const prepareSqliteFile = (kind: SqliteFileFormat, db: SqliteDatabase): void => {
  const where = db.name;
  const create = db.transaction(() => {
    if (inspect(kind, db, where) === 'ours') return;
    db.exec(`
      CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
      ${kind.schema}
      PRAGMA application_id = ${kind.applicationId};
      PRAGMA user_version = ${kind.format};
    `);
    db.prepare('INSERT INTO meta (key, value) VALUES (?, ?), (?, ?)').run(
      'magic',
      kind.magic,
      'format',
      String(kind.format),
    );
  });
  try {
    // IMMEDIATE: two processes creating the same new file serialize; the second one sees the
    // first one's tables and checks them instead of creating them again.
    create.immediate();
  } catch (error) {
    throw translateSqliteError(kind.errors, error, `preparing ${where}`);
  }
};

export type OpenSqliteFileOptions = {
  /**
   * `'full'` (default): `synchronous=FULL`, every commit syncs the WAL, so an acknowledged
   * write survives a process kill and a power loss. `'normal'`: `synchronous=NORMAL`, the
   * WAL is synced only at checkpoints; the last commits may be lost on power loss.
   */
  readonly durability?: 'full' | 'normal';
  /** How long a writer waits for another process's write lock, in ms. */
  readonly busyTimeoutMs: number;
  /** Page cache of this connection, in MiB; default 64. */
  readonly cacheSizeMiB?: number;
  /** Further `PRAGMA`s, set after the others (`wal_autocheckpoint = 10000`). */
  readonly pragmas?: readonly string[];
};

/**
 * Opens (or creates) a Shoal SQLite file at `path` and hands the connection to `create`:
 * first checks that an existing file is of this kind through a read-only connection, so a
 * wrong path (the other kind's file, someone's database) never gets changed, then opens it
 * in WAL mode with the chosen durability. `DATA_DIR_INVALID` for a file that is not of this
 * kind or a path that cannot be opened (a missing directory); the connection is closed when
 * `create` throws.
 */
export const openSqliteFile = <T>(
  kind: SqliteFileFormat,
  path: string,
  options: OpenSqliteFileOptions,
  create: (db: SqliteDatabase) => T,
): T => {
  const translate = (error: unknown) => translateSqliteError(kind.errors, error, `opening ${path}`);
  if (existsSync(path)) {
    let probe: SqliteDatabase | undefined;
    try {
      probe = new Database(path, { readonly: true, fileMustExist: true });
      inspect(kind, probe, path);
    } catch (error) {
      if (sqliteCode(error) === 'SQLITE_NOTADB') {
        throw notOurs(kind, path, 'not a SQLite database', error);
      }
      throw translate(error);
    } finally {
      probe?.close();
    }
  }
  let db: SqliteDatabase;
  try {
    db = new Database(path, { timeout: options.busyTimeoutMs });
  } catch (error) {
    // better-sqlite3 reports a missing directory as a TypeError, SQLite a bad path as CANTOPEN.
    const code = sqliteCode(error);
    if (code === undefined || code.startsWith('SQLITE_CANTOPEN')) {
      throw new ShoalError(
        'DATA_DIR_INVALID',
        `cannot open the ${kind.errors.what} ${path}: ${(error as Error).message}`,
        { cause: error, detail: { path } },
      );
    }
    throw translate(error);
  }
  try {
    const mode = db.pragma('journal_mode = WAL', { simple: true });
    if (mode !== 'wal') {
      throw new ShoalError('DATA_DIR_INVALID', `${path}: cannot use WAL mode here (got ${mode})`, {
        detail: { path },
      });
    }
    db.pragma(`synchronous = ${options.durability === 'normal' ? 'NORMAL' : 'FULL'}`);
    db.pragma(`cache_size = ${-1024 * (options.cacheSizeMiB ?? 64)}`);
    for (const pragma of options.pragmas ?? []) db.pragma(pragma);
    return create(db);
  } catch (error) {
    db.close();
    throw translate(error);
  }
};

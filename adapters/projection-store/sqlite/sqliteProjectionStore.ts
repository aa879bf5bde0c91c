import type { DocChange, DocKey, Position, ProjectionStore } from '../../../domain';
import { docKeyString } from '../../../domain';
import type { ShoalError } from '../../../domain';
import type { SqliteDatabase, SqliteFileErrors, SqliteFileFormat } from '../../../kit/sqlite';
import { openSqliteFile, prepareSqliteFile, translateSqliteError } from '../../../kit/sqlite';
import { checkCommit, createDocDigest, listLimit, storeClosed } from '../storeRules';

/**
 * Projection state in one SQLite file beside the log (WAL; several processes may share it).
 *
 * Layout (format 1): `docs` holds one row per document, keyed by (projection, partition, id)
 * in a WITHOUT ROWID b-tree, so a partition's ids are one ordered range; `doc` is JSON text.
 * `checkpoints` holds each projection's position and the `version` of `evolve` that built
 * its documents. `meta` holds `magic` and `format`: a file without them is not opened, let
 * alone changed. Text compares with the BINARY collation: UTF-8 bytes, i.e. code points.
 *
 * `commit` is one `BEGIN IMMEDIATE` transaction that compares the stored checkpoint with
 * `from` before writing anything, so two runners sharing the file never both apply a batch.
 */
export const sqliteProjectionStoreMagic = 'shoal-projection-store';
export const sqliteProjectionStoreFormat = 1;
/** `PRAGMA application_id`, "SHPS": tells this file from the log ("SHOL") at a glance. */
const applicationId = 0x53485053;

export const defaultBusyTimeoutMs = 5000;

export type SqliteProjectionStoreOptions = {
  /** Close the database in `close()`. False (the default) for a handle the caller owns. */
  readonly closeDatabase?: boolean;
};

export type OpenSqliteProjectionStoreOptions = {
  /**
   * `'full'` (default): `synchronous=FULL`, every commit syncs the WAL. `'normal'`: synced at
   * checkpoints only; a power loss may lose the last commits, which the runner then re-applies
   * from the log (state and checkpoint are lost together, never one without the other).
   */
  readonly durability?: 'full' | 'normal';
  /** How long a commit waits for another process's write lock, in ms; default 5000. */
  readonly busyTimeoutMs?: number;
  /** Page cache of this connection, in MiB; default 64. */
  readonly cacheSizeMiB?: number;
};

type Db = SqliteDatabase;

/** How the store reports SQLite failures: locks and I/O as `SERVICE_UNAVAILABLE`. */
const errors: SqliteFileErrors = {
  what: 'projection store',
  closed: storeClosed,
  unavailable: 'SERVICE_UNAVAILABLE',
  corrupt: 'INTERNAL',
};

const translate = (error: unknown, doing: string): ShoalError =>
  translateSqliteError(errors, error, doing);

/** The store's file: format 1, with the `docs` and `checkpoints` tables. */
const storeFile: SqliteFileFormat = {
  errors,
  magic: sqliteProjectionStoreMagic,
  format: sqliteProjectionStoreFormat,
  formatName: 'projection store',
  applicationId,
  schema: `
    CREATE TABLE docs (
      projection TEXT NOT NULL,
      partition TEXT NOT NULL,
      id TEXT NOT NULL,
      doc TEXT NOT NULL,
      PRIMARY KEY (projection, partition, id)
    ) WITHOUT ROWID;
    CREATE TABLE checkpoints (
      projection TEXT PRIMARY KEY,
      position INTEGER NOT NULL,
      version INTEGER NOT NULL
    ) WITHOUT ROWID;
  `,
  tables: ['docs', 'checkpoints'],
  damaged: 'DATA_DIR_INVALID',
};

const byString = (a: string, b: string): number => (a < b ? -1 : a > b ? 1 : 0);

/**
 * `items` in b-tree key order (UTF-16 `<` is close enough for locality), stable: two items of
 * one key keep their order. Grouping by partition first sorts far fewer strings than a
 * comparison sort of (partition, id) pairs, which matters at 100,000 changes per commit.
 */
const inKeyOrder = <T>(items: readonly T[], keyOf: (item: T) => DocKey): readonly T[] => {
  if (items.length < 2) return items;
  const groups = new Map<string, T[]>();
  for (const item of items) {
    const partition = keyOf(item).partition;
    const group = groups.get(partition);
    if (group === undefined) groups.set(partition, [item]);
    else group.push(item);
  }
  const out: T[] = [];
  for (const partition of [...groups.keys()].sort(byString)) {
    const group = groups.get(partition) as T[];
    if (group.length > 1) group.sort((a, b) => byString(keyOf(a).id, keyOf(b).id));
    for (const item of group) out.push(item);
  }
  return out;
};

/**
 * The SQLite ProjectionStore over a database the caller opened (tests inject one; services
 * use `openSqliteProjectionStore`). Creates the schema in an empty database and refuses any
 * other database that is not a projection store. Set WAL and `busy_timeout` on `db` first.
 */
export const createSqliteProjectionStore = (
  db: Db,
  options: SqliteProjectionStoreOptions = {},
): ProjectionStore => {
  prepareSqliteFile(storeFile, db);

  const checkpointRow = db
    .prepare('SELECT position, version FROM checkpoints WHERE projection = ?')
    .raw();
  const checkpointOnly = db
    .prepare('SELECT position FROM checkpoints WHERE projection = ?')
    .pluck();
  const getDoc = db
    .prepare('SELECT doc FROM docs WHERE projection = ? AND partition = ? AND id = ?')
    .pluck();
  const listFirst = db
    .prepare('SELECT id, doc FROM docs WHERE projection = ? AND partition = ? ORDER BY id LIMIT ?')
    .raw();
  const listAfter = db
    .prepare(
      'SELECT id, doc FROM docs WHERE projection = ? AND partition = ? AND id > ? ' +
        'ORDER BY id LIMIT ?',
    )
    .raw();
  const listLast = db
    .prepare(
      'SELECT id, doc FROM docs WHERE projection = ? AND partition = ? ' +
        'ORDER BY id DESC LIMIT ?',
    )
    .raw();
  const listBefore = db
    .prepare(
      'SELECT id, doc FROM docs WHERE projection = ? AND partition = ? AND id < ? ' +
        'ORDER BY id DESC LIMIT ?',
    )
    .raw();
  // One index seek per partition (a skip scan): DISTINCT would read every document.
  const firstPartition = db
    .prepare('SELECT partition FROM docs WHERE projection = ? ORDER BY partition LIMIT 1')
    .pluck();
  const nextPartition = db
    .prepare(
      'SELECT partition FROM docs WHERE projection = ? AND partition > ? ' +
        'ORDER BY partition LIMIT 1',
    )
    .pluck();
  const putDoc = db.prepare(
    'INSERT OR REPLACE INTO docs (projection, partition, id, doc) VALUES (?, ?, ?, ?)',
  );
  const deleteDoc = db.prepare(
    'DELETE FROM docs WHERE projection = ? AND partition = ? AND id = ?',
  );
  const putCheckpoint = db.prepare(
    'INSERT OR REPLACE INTO checkpoints (projection, position, version) VALUES (?, ?, ?)',
  );
  const deleteDocs = db.prepare('DELETE FROM docs WHERE projection = ?');
  const deleteCheckpoint = db.prepare('DELETE FROM checkpoints WHERE projection = ?');
  const allDocs = db
    .prepare('SELECT partition, id, doc FROM docs WHERE projection = ? ORDER BY partition, id')
    .raw();

  let closed = false;
  const ensureOpen = () => {
    if (closed) throw storeClosed();
  };

  /** Runs `fn`, translating errors. One statement is its own (implicit) read transaction. */
  const reading = <T>(doing: string, fn: () => T): T => {
    ensureOpen();
    try {
      return fn();
    } catch (error) {
      throw translate(error, doing);
    }
  };

  /** Many statements in one read transaction: one snapshot, and one WAL read lock, not N. */
  const snapshot = <A extends unknown[], T>(fn: (...args: A) => T) => {
    const tx = db.transaction(fn);
    return (...args: A): T => tx.deferred(...args);
  };

  const loadMany = snapshot((projection: string, keys: readonly DocKey[]) => {
    const found = new Map<string, unknown>();
    for (const key of keys) {
      const json = getDoc.get(projection, key.partition, key.id) as string | undefined;
      if (json !== undefined) found.set(docKeyString(key), JSON.parse(json));
    }
    return found;
  });

  const commitTx = db.transaction(
    (
      projection: string,
      from: Position,
      to: Position,
      version: number,
      keys: readonly DocKey[],
      texts: readonly (string | undefined)[],
    ): boolean => {
      const stored = (checkpointOnly.get(projection) as Position | undefined) ?? 0;
      if (stored !== from) return false;
      for (let i = 0; i < keys.length; i++) {
        const key = keys[i] as DocKey;
        const text = texts[i];
        if (text === undefined) deleteDoc.run(projection, key.partition, key.id);
        else putDoc.run(projection, key.partition, key.id, text);
      }
      putCheckpoint.run(projection, to, version);
      return true;
    },
  );

  const listPartitions = snapshot(
    (projection: string, after: string | undefined, limit: number) => {
      const out: string[] = [];
      let name = (
        after === undefined ? firstPartition.get(projection) : nextPartition.get(projection, after)
      ) as string | undefined;
      while (name !== undefined && out.length < limit) {
        out.push(name);
        name = nextPartition.get(projection, name) as string | undefined;
      }
      return out;
    },
  );

  const resetTx = db.transaction((projection: string) => {
    deleteDocs.run(projection);
    deleteCheckpoint.run(projection);
  });

  return {
    async checkpoint(projection: string) {
      return reading('reading a checkpoint', () => {
        const row = checkpointRow.get(projection) as [Position, number] | undefined;
        return row?.[0] ?? 0;
      });
    },

    async storedVersion(projection: string) {
      return reading('reading a checkpoint', () => {
        const row = checkpointRow.get(projection) as [Position, number] | undefined;
        return row?.[1];
      });
    },

    async getMany(projection: string, keys: readonly DocKey[]) {
      ensureOpen();
      // Reading in key order walks the b-tree left to right: fewer page misses.
      const sorted = inKeyOrder(keys, (key) => key);
      try {
        return loadMany(projection, sorted);
      } catch (error) {
        throw translate(error, 'reading documents');
      }
    },

    async get<D>(projection: string, key: DocKey) {
      return reading('reading a document', () => {
        const json = getDoc.get(projection, key.partition, key.id) as string | undefined;
        return json === undefined ? undefined : (JSON.parse(json) as D);
      });
    },

    async list<D>(
      projection: string,
      partition: string,
      options: { after?: string; limit?: number; reverse?: boolean } = {},
    ) {
      const limit = listLimit(options.limit);
      if (limit === 0) return [];
      const sqlLimit = limit === Infinity ? -1 : limit;
      const { after } = options;
      return reading('listing documents', () => {
        const rows = (
          options.reverse === true
            ? after === undefined
              ? listLast.all(projection, partition, sqlLimit)
              : listBefore.all(projection, partition, after, sqlLimit)
            : after === undefined
              ? listFirst.all(projection, partition, sqlLimit)
              : listAfter.all(projection, partition, after, sqlLimit)
        ) as [string, string][];
        return rows.map(([id, json]) => ({ id, doc: JSON.parse(json) as D }));
      });
    },

    async partitions(projection: string, options: { after?: string; limit?: number } = {}) {
      const limit = listLimit(options.limit);
      if (limit === 0) return [];
      return reading('listing partitions', () => listPartitions(projection, options.after, limit));
    },

    async commit(
      projection: string,
      batch: { from: Position; to: Position; version: number; changes: readonly DocChange[] },
    ) {
      ensureOpen();
      checkCommit(projection, batch);
      // Serialize and sort before taking the write lock: the lock is held for writes only,
      // and writes in key order touch each b-tree page once. The sort is stable, so two
      // changes of one key keep their order and the later one wins.
      const changes = inKeyOrder(batch.changes, (change) => change.key);
      const keys = changes.map((change) => change.key);
      const texts = changes.map((change) =>
        change.doc === undefined ? undefined : JSON.stringify(change.doc),
      );
      try {
        return commitTx.immediate(projection, batch.from, batch.to, batch.version, keys, texts);
      } catch (error) {
        throw translate(error, `committing ${projection}`);
      }
    },

    async reset(projection: string) {
      ensureOpen();
      try {
        resetTx.immediate(projection);
      } catch (error) {
        throw translate(error, `resetting ${projection}`);
      }
    },

    async digest(projection: string) {
      return reading('computing a digest', () => {
        const digest = createDocDigest();
        for (const row of allDocs.iterate(projection)) {
          const [partition, id, json] = row as [string, string, string];
          digest.addJson(partition, id, json);
        }
        return digest.value();
      });
    },

    async close() {
      if (closed) return;
      closed = true;
      if (options.closeDatabase === true) db.close();
    },
  };
};

/**
 * Opens (or creates) the projection store at `path`: checks that an existing file is one
 * through a read-only connection first, so a wrong path (the log, say) never gets changed,
 * then opens it in WAL mode. Throws `DATA_DIR_INVALID` for a file that is not a projection
 * store, `SERVICE_UNAVAILABLE` when it cannot be opened.
 */
export const openSqliteProjectionStore = (
  path: string,
  options: OpenSqliteProjectionStoreOptions = {},
): ProjectionStore =>
  openSqliteFile(
    storeFile,
    path,
    {
      busyTimeoutMs: options.busyTimeoutMs ?? defaultBusyTimeoutMs,
      ...(options.durability !== undefined && { durability: options.durability }),
      ...(options.cacheSizeMiB !== undefined && { cacheSizeMiB: options.cacheSizeMiB }),
    },
    (db) => createSqliteProjectionStore(db, { closeDatabase: true }),
  );

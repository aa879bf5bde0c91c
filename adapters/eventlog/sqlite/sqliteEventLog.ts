import type { Subscriber } from 'rxjs';
import type {
  AppendOptions,
  EventLog,
  Position,
  ReadOptions,
  RecordedEvent,
  ShoalEvent,
} from '../../../domain';
import { ShoalError } from '../../../domain';
import type { SqliteDatabase, SqliteFileErrors, SqliteFileFormat } from '../../../kit/sqlite';
import { openSqliteFile, prepareSqliteFile, translateSqliteError } from '../../../kit/sqlite';
import type { StreamExpectation } from '../appendRules';
import {
  checkBatch,
  firstPosition,
  logClosed,
  readLimit,
  subscribeFrom,
  wrongExpectedVersion,
  yieldToEventLoop,
} from '../appendRules';

/**
 * The embedded log: one SQLite file in WAL mode, shared by every Shoal process on the host.
 *
 * Layout (format 2): `events` holds one row per event; `position` is the rowid
 * (AUTOINCREMENT, so a position is never reused), `id` is unique (idempotent appends) and
 * `(stream, stream_version)` is unique (compare-and-swap). `event` is the envelope (id, type,
 * version, stream, data, metadata) as one JSON text, written once by `append`: a read parses
 * it and sets `position` and `streamVersion` from their columns. `meta` holds `magic` and
 * `format`: a file without them is not opened, let alone changed. Format 1 (data and
 * metadata in separate columns) is refused with a message saying so.
 *
 * Writers serialize on SQLite's write lock: each batch is one `BEGIN IMMEDIATE` transaction
 * that checks ids, checks `expectedVersion` and inserts (without an `expectedVersion`, the
 * insert itself skips known ids: ON CONFLICT DO NOTHING), so positions follow commit order
 * across processes and are dense (a rolled-back batch gives its positions back).
 */
export const sqliteLogMagic = 'shoal-event-log';
export const sqliteLogFormat = 2;
/** `PRAGMA application_id`, "SHOL": lets `file(1)` and other tools recognize a Shoal log. */
const applicationId = 0x53484f4c;

export const defaultPollIntervalMs = 25;
export const defaultPageSize = 2000;
export const defaultBusyTimeoutMs = 5000;

export type SqliteEventLogOptions = {
  /**
   * How often live subscriptions look for events appended by other connections (another
   * process, or another handle on the same file), in ms; default 25. Appends through this
   * handle reach its subscribers at once. The delay for other writers (`liveDelayMs`) is at
   * most one interval plus the time to read the new page: about 30 ms with the default.
   */
  readonly pollIntervalMs?: number;
  /** Rows per page for `read` and subscription catch-up; default 2000. */
  readonly pageSize?: number;
  /** Close the database in `close()`. False for a handle the caller built and still owns. */
  readonly closeDatabase?: boolean;
};

export type OpenSqliteEventLogOptions = SqliteEventLogOptions & {
  /**
   * `'full'` (default): `synchronous=FULL`, every commit syncs the WAL, so an acknowledged
   * append survives a process kill and a power loss. `'normal'`: `synchronous=NORMAL`, the WAL
   * is synced only at checkpoints; an acknowledged append still survives kill -9 (the OS has
   * the write) but the last commits may be lost on power loss or a kernel crash.
   */
  readonly durability?: 'full' | 'normal';
  /**
   * How long a writer waits for another process's write lock before the append fails with
   * the retriable `LOG_UNAVAILABLE`, in ms; default 5000. The wait blocks this process's event
   * loop (better-sqlite3 is synchronous); write transactions are short, so waits are too.
   */
  readonly busyTimeoutMs?: number;
  /** Page cache of this connection, in MiB; default 64 (the id and stream indexes). */
  readonly cacheSizeMiB?: number;
  /**
   * WAL pages after which a commit also checkpoints the WAL into the main file; default 10000
   * (about 40 MB). SQLite's 1000 checkpoints so often that batched appends, which dirty
   * index pages all over the file, write those pages again and again: 10000 measured about
   * 40% more batched throughput. The price: a WAL of that size on disk, and the commit that
   * checkpoints takes tens of ms.
   */
  readonly walAutocheckpointPages?: number;
};

type Db = SqliteDatabase;

const positive = (name: string, value: number | undefined, fallback: number): number => {
  if (value === undefined) return fallback;
  if (!Number.isSafeInteger(value) || value < 1) {
    throw new ShoalError('CONFIG_INVALID', `sqlite log: ${name} must be an integer ≥ 1`, {
      detail: { field: name, value },
    });
  }
  return value;
};

/** How the log reports SQLite failures: locks and I/O as `LOG_UNAVAILABLE`. */
const errors: SqliteFileErrors = {
  what: 'event log',
  closed: logClosed,
  unavailable: 'LOG_UNAVAILABLE',
  corrupt: 'LOG_CORRUPT',
};

const translate = (error: unknown, doing: string): ShoalError =>
  translateSqliteError(errors, error, doing);

/** The log's file: format 2, with the `events` table; format 1 is refused, naming it. */
const logFile: SqliteFileFormat = {
  errors,
  magic: sqliteLogMagic,
  format: sqliteLogFormat,
  formatName: 'log',
  applicationId,
  schema: `
    CREATE TABLE events (
      position INTEGER PRIMARY KEY AUTOINCREMENT,
      id TEXT NOT NULL UNIQUE,
      stream TEXT NOT NULL,
      stream_version INTEGER NOT NULL,
      type TEXT NOT NULL,
      event TEXT NOT NULL
    );
    CREATE UNIQUE INDEX events_stream_version ON events (stream, stream_version);
  `,
  tables: ['events'],
  damaged: 'LOG_CORRUPT',
  // Touches the events b-tree's root and right edge: catches a damaged file early.
  probe: 'SELECT max(position) FROM events',
};

// One JSON text per row, stored as written: one string crosses into JS, one JSON.parse builds
// the event, and `position` and `streamVersion` come from their integer columns. Measured
// faster than having SQLite splice the columns into one JSON text on every read.
type Row = [Position, number, string | null];

/**
 * The SQLite EventLog over a database the caller opened (tests inject one; services use
 * `openSqliteEventLog`). Creates the schema in an empty database and refuses any other
 * database that is not a Shoal log. Set WAL, `synchronous` and `busy_timeout` on `db` first.
 */
export const createSqliteEventLog = (db: Db, options: SqliteEventLogOptions = {}): EventLog => {
  const where = db.name;
  const pollIntervalMs = positive('pollIntervalMs', options.pollIntervalMs, defaultPollIntervalMs);
  const pageSize = positive('pageSize', options.pageSize, defaultPageSize);
  prepareSqliteFile(logFile, db);

  const positionOfId = db.prepare('SELECT position FROM events WHERE id = ?').pluck();
  const lastVersionOf = db
    .prepare(
      'SELECT stream_version FROM events WHERE stream = ? ORDER BY stream_version DESC LIMIT 1',
    )
    .pluck();
  // ON CONFLICT(id) DO NOTHING: a known id is skipped by the insert itself (`changes` 0), so
  // fresh events, the common case, cost no separate id lookup.
  const insert = db.prepare(
    'INSERT INTO events (id, stream, stream_version, type, event) VALUES (?, ?, ?, ?, ?) ' +
      'ON CONFLICT (id) DO NOTHING',
  );
  const page = db
    .prepare(
      'SELECT position, stream_version, event FROM events WHERE position >= ? ' +
        'ORDER BY position LIMIT ?',
    )
    .raw();
  const streamRows = db
    .prepare(
      'SELECT position, stream_version, event FROM events WHERE stream = ? ' +
        'ORDER BY stream_version',
    )
    .raw();
  const maxPosition = db.prepare('SELECT max(position) FROM events').pluck();
  const dataVersion = db.prepare('PRAGMA data_version').pluck();

  let closed = false;

  const decode = (rows: Row[]): RecordedEvent[] => {
    const events = new Array<RecordedEvent>(rows.length);
    for (let i = 0; i < rows.length; i++) {
      const [position, streamVersion, json] = rows[i] as Row;
      try {
        if (json === null) throw new Error('a column is NULL');
        const event = JSON.parse(json) as { position: Position; streamVersion: number };
        // Throws on anything but an object (null, a number…): LOG_CORRUPT below.
        event.position = position;
        event.streamVersion = streamVersion;
        events[i] = event as RecordedEvent;
      } catch (error) {
        throw new ShoalError(
          'LOG_CORRUPT',
          `${where}: event at position ${position} is unreadable`,
          {
            cause: error,
            detail: { position },
          },
        );
      }
    }
    return events;
  };

  const readPage = (from: Position, limit: number): RecordedEvent[] => {
    if (closed) throw logClosed();
    let rows: Row[];
    try {
      rows = page.all(from, limit) as Row[];
    } catch (error) {
      throw translate(error, 'reading');
    }
    return decode(rows);
  };

  type Prepared = {
    readonly event: ShoalEvent;
    /** The envelope as stored: `JSON.stringify(event)` (validated: envelope fields only). */
    readonly json: string;
  };

  // The last version of streams this handle has written or looked up, valid while the log's
  // head is where our own last append left it: another writer moves the head, and the cache
  // is dropped. Saves an index probe per event on hot streams (a tag pushed again, a blob
  // placed after its upload).
  const streamVersions = new Map<string, number>();
  const maxCachedStreams = 100_000;
  let cachedHead = -1;

  type Appended = {
    readonly last: Position;
    readonly head: Position;
    versions: Map<string, number>;
  };

  const appendTx = db.transaction(
    (batch: readonly Prepared[], expectation: StreamExpectation | undefined): Appended => {
      const head = (maxPosition.get() as number | null) ?? 0;
      if (head !== cachedHead) streamVersions.clear();
      const versions = new Map<string, number>();
      const versionOf = (stream: string): number => {
        let version = versions.get(stream) ?? streamVersions.get(stream);
        if (version === undefined) {
          version = (lastVersionOf.get(stream) as number | undefined) ?? -1;
          versions.set(stream, version);
        }
        return version;
      };
      const seen = new Set<string>();
      let last = 0;
      let inserted = false;
      let fresh: readonly Prepared[] = batch;
      if (expectation !== undefined) {
        // Ids first: a retried batch succeeds even when its expectedVersion is now stale.
        const unknown: Prepared[] = [];
        for (const item of batch) {
          const id = item.event.id;
          if (seen.has(id)) continue;
          seen.add(id);
          const position = positionOfId.get(id) as Position | undefined;
          if (position === undefined) unknown.push(item);
          else last = Math.max(last, position);
        }
        if (unknown.length === 0) return { last, head, versions };
        const actual = versionOf(expectation.stream);
        if (actual !== expectation.version) throw wrongExpectedVersion(expectation, actual);
        fresh = unknown;
        seen.clear();
      }
      // Without an expectation, the insert itself tells a known id (no change) from a new one;
      // a known id keeps its original position and does not bump its stream's version.
      for (const { event, json } of fresh) {
        const id = event.id;
        if (seen.has(id)) continue;
        seen.add(id);
        const version = versionOf(event.stream) + 1;
        const result = insert.run(id, event.stream, version, event.type, json);
        if (result.changes === 0) {
          last = Math.max(last, positionOfId.get(id) as Position);
        } else {
          versions.set(event.stream, version);
          last = Number(result.lastInsertRowid);
          inserted = true;
        }
      }
      return { last, head: inserted ? last : head, versions };
    },
  );

  /** Appends in one `BEGIN IMMEDIATE` transaction; the cache learns only what committed. */
  const appendBatch = (batch: readonly Prepared[], expectation?: StreamExpectation): Position => {
    const { last, head, versions } = appendTx.immediate(batch, expectation);
    // Least recently appended streams go first (a Map iterates in insertion order). Clearing
    // the whole cache when full made it useless once a log had more streams than it holds.
    for (const [stream, version] of versions) {
      streamVersions.delete(stream);
      streamVersions.set(stream, version);
    }
    if (streamVersions.size > maxCachedStreams) {
      let excess = streamVersions.size - maxCachedStreams;
      for (const stream of streamVersions.keys()) {
        if (excess-- <= 0) break;
        streamVersions.delete(stream);
      }
    }
    cachedHead = head;
    return last;
  };

  // Live subscriptions. Each feed remembers the last position it delivered and always reads
  // `position > last`, so however wake-ups interleave with appends (ours or another
  // process's), no event is skipped or delivered twice.
  type Feed = {
    last: Position;
    done: boolean;
    running: boolean;
    again: boolean;
    scheduled: boolean;
    readonly subscriber: Subscriber<RecordedEvent>;
  };
  const feeds = new Set<Feed>();
  let poller: NodeJS.Timeout | undefined;
  let seenDataVersion = 0;

  const stop = (feed: Feed) => {
    feed.done = true;
    feeds.delete(feed);
    if (feeds.size === 0 && poller !== undefined) {
      clearInterval(poller);
      poller = undefined;
    }
  };

  const pump = async (feed: Feed): Promise<void> => {
    if (feed.running) {
      feed.again = true;
      return;
    }
    feed.running = true;
    try {
      do {
        feed.again = false;
        for (;;) {
          if (feed.done || closed) return;
          const events = readPage(feed.last + 1, pageSize);
          for (const event of events) {
            if (feed.done) return;
            feed.last = event.position;
            feed.subscriber.next(event);
          }
          if (events.length < pageSize) break;
          // A long catch-up reads page by page and lets the rest of the process run between.
          await yieldToEventLoop();
        }
      } while (feed.again);
    } catch (error) {
      if (!feed.done) {
        stop(feed);
        feed.subscriber.error(translate(error, 'following the log'));
      }
    } finally {
      feed.running = false;
    }
  };

  const wake = (feed: Feed) => {
    if (feed.scheduled) return;
    feed.scheduled = true;
    setImmediate(() => {
      feed.scheduled = false;
      void pump(feed);
    });
  };

  const wakeAll = () => {
    for (const feed of feeds) wake(feed);
  };

  // Another connection's commit changes `data_version` as seen by this connection; ours don't
  // (they wake feeds directly). One cheap pragma per interval, only while someone listens.
  const poll = () => {
    if (closed) return;
    let version: number;
    try {
      version = dataVersion.get() as number;
    } catch (error) {
      const failure = translate(error, 'following the log');
      for (const feed of [...feeds]) {
        stop(feed);
        feed.subscriber.error(failure);
      }
      return;
    }
    if (version !== seenDataVersion) {
      seenDataVersion = version;
      wakeAll();
    }
  };

  const ensureOpen = () => {
    if (closed) throw logClosed();
  };

  const head = (): Position => {
    ensureOpen();
    try {
      return (maxPosition.get() as number | null) ?? 0;
    } catch (error) {
      throw translate(error, 'reading the head');
    }
  };

  return {
    async append(batch: readonly ShoalEvent[], appendOptions?: AppendOptions) {
      ensureOpen();
      const expectation = checkBatch(batch, appendOptions);
      if (batch.length === 0) return head();
      const prepared = batch.map((event) => ({ event, json: JSON.stringify(event) }));
      let position: Position;
      try {
        position = appendBatch(prepared, expectation);
      } catch (error) {
        throw translate(error, 'appending');
      }
      if (feeds.size > 0) wakeAll();
      return position;
    },

    async readBatch(from: Position, readOptions?: ReadOptions) {
      ensureOpen();
      return readPage(firstPosition(from), readLimit(readOptions?.limit));
    },

    async *read(from?: Position) {
      ensureOpen();
      let next = firstPosition(from);
      const end = head();
      while (next <= end) {
        const events = readPage(next, Math.min(pageSize, end - next + 1));
        if (events.length === 0) return;
        for (const event of events) {
          if (event.position > end) return;
          yield event;
        }
        next = (events[events.length - 1] as RecordedEvent).position + 1;
        await yieldToEventLoop();
      }
    },

    async readStream(stream: string) {
      ensureOpen();
      try {
        return decode(streamRows.all(stream) as Row[]);
      } catch (error) {
        throw translate(error, `reading stream ${stream}`);
      }
    },

    subscribe(from?: Position) {
      return subscribeFrom(from, ensureOpen, (start, subscriber) => {
        const feed: Feed = {
          last: start - 1,
          done: false,
          running: false,
          again: false,
          scheduled: false,
          subscriber,
        };
        feeds.add(feed);
        if (poller === undefined) {
          seenDataVersion = dataVersion.get() as number;
          poller = setInterval(poll, pollIntervalMs);
        }
        wake(feed);
        return () => stop(feed);
      });
    },

    async head() {
      return head();
    },

    async close() {
      if (closed) return;
      closed = true;
      for (const feed of [...feeds]) {
        stop(feed);
        feed.subscriber.complete();
      }
      if (options.closeDatabase === true) db.close();
    },
  };
};

/**
 * Opens (or creates) the log file at `path`: checks that an existing file is a Shoal log
 * through a read-only connection first, so a wrong path never gets changed, then opens it in
 * WAL mode with the chosen durability. Throws `DATA_DIR_INVALID` for a file that is not a
 * Shoal log, `LOG_CORRUPT` for a damaged one, `LOG_UNAVAILABLE` when it cannot be opened.
 */
export const openSqliteEventLog = (
  path: string,
  options: OpenSqliteEventLogOptions = {},
): EventLog =>
  openSqliteFile(
    logFile,
    path,
    {
      busyTimeoutMs: positive('busyTimeoutMs', options.busyTimeoutMs, defaultBusyTimeoutMs),
      ...(options.durability !== undefined && { durability: options.durability }),
      ...(options.cacheSizeMiB !== undefined && { cacheSizeMiB: options.cacheSizeMiB }),
      pragmas: [`wal_autocheckpoint = ${options.walAutocheckpointPages ?? 10_000}`],
    },
    (db) => createSqliteEventLog(db, { ...options, closeDatabase: true }),
  );

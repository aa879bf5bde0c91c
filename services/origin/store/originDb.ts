import Database from 'better-sqlite3';
import type { Database as SqliteDatabase } from 'better-sqlite3';

/** An upload session as stored. `committed` rows wait for their events to reach the log. */
export type UploadRow = {
  readonly id: string;
  /** File name in the uploads directory. */
  readonly file: string;
  readonly repo: string;
  /**
   * The actor who started the session (`user:alice`): only they may append to it, commit or
   * cancel it. Absent for sessions started before sessions had owners, or by the origin's own
   * callers in the same process without one.
   */
  readonly owner?: string;
  readonly createdAt: number;
  readonly updatedAt: number;
  readonly commit?: {
    readonly digest: string;
    readonly size: number;
    readonly repo: string;
    readonly mediaType?: string;
    /** Ids of the BlobUploaded and BlobPlaced events, fixed so retried appends are no-ops. */
    readonly eventIds: readonly [string, string];
    /** Whom the events are for (recorded as their actor and client, even after a crash). */
    readonly by?: { readonly actor: string; readonly client?: string };
  };
};

export type JobKind = 'write-back' | 'place' | 'drop' | 'erase';

/**
 * A durable job: write a blob back to the backend (`write-back`), place a copy of it on
 * another owner of its digest (`place`), drop this origin's copy of a blob GC collected
 * (`drop`), or delete a collected blob's backend objects (`erase`, by the origin GC named).
 */
export type JobRow = {
  readonly kind: JobKind;
  readonly digest: string;
  /** Backend name (write-back), origin id (place, drop), `backends` (erase). */
  readonly target: string;
  /** Id of the event the job appends when done, fixed so a retried append is a no-op. */
  readonly eventId: string;
  readonly attempts: number;
  readonly notBefore: number;
  readonly lastError?: string;
};

const schemaVersion = 2;

/**
 * The origin's own state, in one SQLite file beside its blobs: upload sessions, the durable
 * job queue (write-back, placement) and computed metainfo. Nothing here is shared with
 * other processes; the log remains the cluster's source of truth. Writes are synchronous
 * and fsynced (`synchronous=FULL`): an enqueued job survives kill -9 and power loss.
 */
export const openOriginDb = (path: string) => {
  const db: SqliteDatabase = new Database(path);
  db.pragma('journal_mode = WAL');
  db.pragma('synchronous = FULL');
  db.pragma('busy_timeout = 5000');
  const version = db.pragma('user_version', { simple: true }) as number;
  if (version > schemaVersion) {
    db.close();
    throw new Error(`${path} has schema ${version}; this Shoal knows up to ${schemaVersion}`);
  }
  db.exec(`
    CREATE TABLE IF NOT EXISTS uploads (
      id TEXT PRIMARY KEY,
      file TEXT NOT NULL,
      repo TEXT NOT NULL,
      created_at INTEGER NOT NULL,
      updated_at INTEGER NOT NULL,
      commit_json TEXT
    ) STRICT;
    CREATE TABLE IF NOT EXISTS jobs (
      kind TEXT NOT NULL,
      digest TEXT NOT NULL,
      target TEXT NOT NULL,
      event_id TEXT NOT NULL,
      attempts INTEGER NOT NULL DEFAULT 0,
      not_before INTEGER NOT NULL,
      last_error TEXT,
      created_at INTEGER NOT NULL,
      PRIMARY KEY (kind, digest, target)
    ) STRICT;
    CREATE INDEX IF NOT EXISTS jobs_due ON jobs (not_before);
    CREATE TABLE IF NOT EXISTS metainfo (
      digest TEXT PRIMARY KEY,
      json TEXT NOT NULL
    ) STRICT;
    CREATE TABLE IF NOT EXISTS cursors (
      name TEXT PRIMARY KEY,
      position INTEGER NOT NULL
    ) STRICT;
  `);
  // Schema 2: sessions have owners.
  if (version < 2 && !columnsOf(db, 'uploads').includes('owner')) {
    db.exec('ALTER TABLE uploads ADD COLUMN owner TEXT');
  }
  // Placement jobs were called `replicate` before "replication" came to mean copying to
  // other clusters only; a queue written then is carried over.
  db.exec("UPDATE OR REPLACE jobs SET kind = 'place' WHERE kind = 'replicate'");
  db.pragma(`user_version = ${schemaVersion}`);

  type UploadRecord = {
    id: string;
    file: string;
    repo: string;
    owner: string | null;
    created_at: number;
    updated_at: number;
    commit_json: string | null;
  };
  const toUpload = (r: UploadRecord): UploadRow => ({
    id: r.id,
    file: r.file,
    repo: r.repo,
    ...(r.owner !== null && { owner: r.owner }),
    createdAt: r.created_at,
    updatedAt: r.updated_at,
    ...(r.commit_json !== null && { commit: JSON.parse(r.commit_json) as UploadRow['commit'] }),
  });
  type JobRecord = {
    kind: JobKind;
    digest: string;
    target: string;
    event_id: string;
    attempts: number;
    not_before: number;
    last_error: string | null;
  };
  const toJob = (r: JobRecord): JobRow => ({
    kind: r.kind,
    digest: r.digest,
    target: r.target,
    eventId: r.event_id,
    attempts: r.attempts,
    notBefore: r.not_before,
    ...(r.last_error !== null && { lastError: r.last_error }),
  });

  const statements = {
    insertUpload: db.prepare(
      `INSERT INTO uploads (id, file, repo, owner, created_at, updated_at)
       VALUES (?, ?, ?, ?, ?, ?)`,
    ),
    getUpload: db.prepare('SELECT * FROM uploads WHERE id = ?'),
    touchUpload: db.prepare('UPDATE uploads SET updated_at = ? WHERE id = ?'),
    commitUpload: db.prepare('UPDATE uploads SET commit_json = ?, updated_at = ? WHERE id = ?'),
    deleteUpload: db.prepare('DELETE FROM uploads WHERE id = ?'),
    allUploads: db.prepare('SELECT * FROM uploads ORDER BY created_at'),
    expiredUploads: db.prepare(
      'SELECT * FROM uploads WHERE commit_json IS NULL AND updated_at < ? ORDER BY updated_at',
    ),
    countUploads: db.prepare('SELECT count(*) AS n FROM uploads WHERE commit_json IS NULL'),
    countUploadsOf: db.prepare(
      'SELECT count(*) AS n FROM uploads WHERE commit_json IS NULL AND owner = ?',
    ),
    insertJob: db.prepare(
      `INSERT INTO jobs (kind, digest, target, event_id, not_before, created_at)
       VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING`,
    ),
    dueJobs: db.prepare('SELECT * FROM jobs WHERE not_before <= ? ORDER BY not_before LIMIT ?'),
    dueJobsOf: db.prepare(
      'SELECT * FROM jobs WHERE kind = ? AND not_before <= ? ORDER BY not_before LIMIT ?',
    ),
    nextDueAfter: db.prepare('SELECT min(not_before) AS at FROM jobs WHERE not_before > ?'),
    deleteJob: db.prepare('DELETE FROM jobs WHERE kind = ? AND digest = ? AND target = ?'),
    deleteJobsOf: db.prepare('DELETE FROM jobs WHERE digest = ?'),
    deleteJobsOfKind: db.prepare('DELETE FROM jobs WHERE digest = ? AND kind = ?'),
    getCursor: db.prepare('SELECT position FROM cursors WHERE name = ?'),
    setCursor: db.prepare(
      `INSERT INTO cursors (name, position) VALUES (?, ?)
       ON CONFLICT (name) DO UPDATE SET position = excluded.position`,
    ),
    failJob: db.prepare(
      `UPDATE jobs SET attempts = attempts + 1, not_before = ?, last_error = ?
       WHERE kind = ? AND digest = ? AND target = ?`,
    ),
    jobsOf: db.prepare('SELECT * FROM jobs WHERE digest = ? ORDER BY kind, target'),
    countJobs: db.prepare('SELECT kind, count(*) AS n FROM jobs GROUP BY kind'),
    oldestJobs: db.prepare('SELECT kind, min(created_at) AS at FROM jobs GROUP BY kind'),
    getMetainfo: db.prepare('SELECT json FROM metainfo WHERE digest = ?'),
    putMetainfo: db.prepare('INSERT OR REPLACE INTO metainfo (digest, json) VALUES (?, ?)'),
    deleteMetainfo: db.prepare('DELETE FROM metainfo WHERE digest = ?'),
  };

  const insertJobs = (jobs: readonly NewJob[], now: number) => {
    for (const j of jobs) {
      statements.insertJob.run(j.kind, j.digest, j.target, j.eventId, now + (j.delayMs ?? 0), now);
    }
  };

  return {
    insertUpload: (row: Omit<UploadRow, 'commit'>) =>
      void statements.insertUpload.run(
        row.id,
        row.file,
        row.repo,
        row.owner ?? null,
        row.createdAt,
        row.updatedAt,
      ),
    getUpload: (id: string): UploadRow | undefined => {
      const r = statements.getUpload.get(id) as UploadRecord | undefined;
      return r && toUpload(r);
    },
    touchUpload: (id: string, now: number) => void statements.touchUpload.run(now, id),
    deleteUpload: (id: string) => void statements.deleteUpload.run(id),
    allUploads: (): UploadRow[] => (statements.allUploads.all() as UploadRecord[]).map(toUpload),
    expiredUploads: (before: number): UploadRow[] =>
      (statements.expiredUploads.all(before) as UploadRecord[]).map(toUpload),
    openUploadCount: (): number => (statements.countUploads.get() as { n: number }).n,
    /** Open sessions an owner holds (for the per-user cap). */
    openUploadCountOf: (owner: string): number =>
      (statements.countUploadsOf.get(owner) as { n: number }).n,

    /** Marks a session committed and enqueues its jobs, in one transaction. */
    commitUpload: db.transaction(
      (id: string, commit: NonNullable<UploadRow['commit']>, jobs: NewJob[], now: number) => {
        statements.commitUpload.run(JSON.stringify(commit), now, id);
        insertJobs(jobs, now);
      },
    ),
    /** Ends a committed session and enqueues its jobs, in one transaction. */
    finishUpload: db.transaction((id: string, jobs: NewJob[], now: number) => {
      insertJobs(jobs, now);
      statements.deleteUpload.run(id);
    }),
    /** Enqueues jobs (idempotent per kind, digest and target) in one transaction. */
    enqueue: db.transaction((jobs: NewJob[], now: number) => insertJobs(jobs, now)),
    dueJobs: (now: number, limit: number): JobRow[] =>
      (statements.dueJobs.all(now, limit) as JobRecord[]).map(toJob),
    /** Jobs of one kind due at `now`, the longest waiting first. */
    dueJobsOf: (kind: JobKind, now: number, limit: number): JobRow[] =>
      (statements.dueJobsOf.all(kind, now, limit) as JobRecord[]).map(toJob),
    /** When the next job that is not due yet becomes due. */
    nextDueAfter: (now: number): number | undefined =>
      (statements.nextDueAfter.get(now) as { at: number | null }).at ?? undefined,
    deleteJob: (job: Pick<JobRow, 'kind' | 'digest' | 'target'>) =>
      void statements.deleteJob.run(job.kind, job.digest, job.target),
    deleteJobsOf: (digest: string) => void statements.deleteJobsOf.run(digest),
    /** Drops a digest's queued jobs of some kinds. */
    deleteJobsOfKinds: db.transaction((digest: string, kinds: readonly JobKind[]) => {
      for (const kind of kinds) statements.deleteJobsOfKind.run(digest, kind);
    }),
    /** Where a reader of the log stopped (0: from the start). */
    cursor: (name: string): number =>
      (statements.getCursor.get(name) as { position: number } | undefined)?.position ?? 0,
    /** Enqueues jobs and moves a cursor past what decided them, in one transaction. */
    enqueueAt: db.transaction((name: string, position: number, jobs: NewJob[], now: number) => {
      insertJobs(jobs, now);
      statements.setCursor.run(name, position);
    }),
    failJob: (job: Pick<JobRow, 'kind' | 'digest' | 'target'>, notBefore: number, error: string) =>
      void statements.failJob.run(
        notBefore,
        error.slice(0, 1000),
        job.kind,
        job.digest,
        job.target,
      ),
    jobsOf: (digest: string): JobRow[] => (statements.jobsOf.all(digest) as JobRecord[]).map(toJob),
    jobCounts: (): Record<string, number> =>
      Object.fromEntries(
        (statements.countJobs.all() as Array<{ kind: string; n: number }>).map((r) => [
          r.kind,
          r.n,
        ]),
      ),
    /** When the oldest queued job of each kind was queued (ms since the epoch). */
    oldestJobs: (): Record<string, number> =>
      Object.fromEntries(
        (statements.oldestJobs.all() as Array<{ kind: string; at: number }>).map((r) => [
          r.kind,
          r.at,
        ]),
      ),

    getMetainfo: (digest: string): string | undefined =>
      (statements.getMetainfo.get(digest) as { json: string } | undefined)?.json,
    putMetainfo: (digest: string, json: string) => void statements.putMetainfo.run(digest, json),
    deleteMetainfo: (digest: string) => void statements.deleteMetainfo.run(digest),

    close: () => db.close(),
  };
};

const columnsOf = (db: SqliteDatabase, table: string): string[] =>
  (db.prepare(`PRAGMA table_info(${table})`).all() as Array<{ name: string }>).map((c) => c.name);

export type NewJob = {
  readonly kind: JobKind;
  readonly digest: string;
  readonly target: string;
  readonly eventId: string;
  readonly delayMs?: number;
};

export type OriginDb = ReturnType<typeof openOriginDb>;

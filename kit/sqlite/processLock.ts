import Database from 'better-sqlite3';
import { ShoalError } from '../../domain';
import { sqliteCode } from './sqliteErrors';

/** Connections holding a lock: reachable from here, so never finalised while held. */
const heldLocks = new Set<Database.Database>();

/** A lock this process holds until `release()` or until it exits, however it exits. */
export type ProcessLock = { readonly release: () => void };

/**
 * Takes a lock on `path` that the operating system releases when this process dies, even by
 * SIGKILL, so a lock left by a dead process is never in the way. It is SQLite's own file lock
 * on an empty database (never written; rollback journal in memory), held by a transaction
 * left open:
 *
 * - `exclusive` (`BEGIN EXCLUSIVE`): no other holder of either kind;
 * - `shared` (an open read transaction): any number of shared holders, no exclusive one.
 *
 * Returns undefined at once when the lock is held in a conflicting way (no waiting). Locks
 * are per file, across processes and between connections of one process alike.
 *
 * The lock is held until `release()` even if the caller drops every reference to it: a
 * connection the garbage collector finalises closes its file and so releases the lock, which
 * once let a second process in beside a first that had merely let go of the object.
 */
export const tryProcessLock = (
  path: string,
  mode: 'exclusive' | 'shared',
): ProcessLock | undefined => {
  let db: Database.Database;
  try {
    db = new Database(path, { timeout: 0 });
  } catch (error) {
    throw new ShoalError('DATA_DIR_INVALID', `cannot open the lock ${path}: ${String(error)}`);
  }
  try {
    // WAL would let readers past an exclusive lock; rollback modes do not. Nothing is ever
    // written, so the journal is kept in memory (no `-journal` file beside the lock).
    db.pragma('journal_mode = MEMORY');
    if (mode === 'exclusive') {
      db.exec('BEGIN EXCLUSIVE');
    } else {
      db.exec('BEGIN');
      db.prepare('SELECT count(*) FROM sqlite_master').get();
    }
  } catch (error) {
    db.close();
    if (sqliteCode(error)?.startsWith('SQLITE_BUSY')) return undefined;
    throw new ShoalError('DATA_DIR_INVALID', `cannot take the lock ${path}: ${String(error)}`);
  }
  heldLocks.add(db);
  return {
    release: () => {
      if (!heldLocks.delete(db)) return;
      db.close();
    },
  };
};

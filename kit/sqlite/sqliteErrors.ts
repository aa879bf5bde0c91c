import type { ErrorCode } from '../../domain';
import { ShoalError, isShoalError } from '../../domain';

/** The SQLite result code of a better-sqlite3 error (`SQLITE_BUSY`, …), if it is one. */
export const sqliteCode = (error: unknown): string | undefined => {
  const code = (error as { code?: unknown } | null)?.code;
  return typeof code === 'string' && code.startsWith('SQLITE_') ? code : undefined;
};

/** How one kind of Shoal SQLite file reports its failures. */
export type SqliteFileErrors = {
  /** What the file is, in messages: `event log`, `projection store`. */
  readonly what: string;
  /** The error of a call after `close()`. */
  readonly closed: () => ShoalError;
  /** For a lock held past the busy timeout, an I/O error, a full disk: retriable. */
  readonly unavailable: ErrorCode;
  /** For a damaged file (`SQLITE_CORRUPT`, `SQLITE_NOTADB`). */
  readonly corrupt: ErrorCode;
};

const unavailableCodes = ['SQLITE_FULL', 'SQLITE_NOMEM', 'SQLITE_PROTOCOL'];
const unavailablePrefixes = ['SQLITE_IOERR', 'SQLITE_CANTOPEN', 'SQLITE_READONLY'];

/**
 * Vendor errors stop here: every SQLite failure leaves as a ShoalError with a code. A
 * ShoalError passes through; an error SQLite did not raise is `INTERNAL`, unless it says the
 * database was closed under the call.
 */
export const translateSqliteError = (
  errors: SqliteFileErrors,
  error: unknown,
  doing: string,
): ShoalError => {
  if (isShoalError(error)) return error;
  const code = sqliteCode(error);
  const message = error instanceof Error ? error.message : String(error);
  const prefix = `${errors.what}: ${doing}`;
  if (code === undefined) {
    if (error instanceof TypeError && /database connection is not open/.test(message)) {
      return errors.closed();
    }
    return new ShoalError('INTERNAL', `${prefix}: ${message}`, { cause: error });
  }
  const detail = { sqlite: code };
  if (code.startsWith('SQLITE_BUSY') || code.startsWith('SQLITE_LOCKED')) {
    return new ShoalError(
      errors.unavailable,
      `${prefix}: the file is locked by another writer (${message})`,
      { cause: error, detail },
    );
  }
  if (code.startsWith('SQLITE_CORRUPT') || code === 'SQLITE_NOTADB') {
    return new ShoalError(errors.corrupt, `${prefix}: ${message}`, { cause: error, detail });
  }
  if (unavailableCodes.includes(code) || unavailablePrefixes.some((p) => code.startsWith(p))) {
    return new ShoalError(errors.unavailable, `${prefix}: ${message}`, { cause: error, detail });
  }
  return new ShoalError('INTERNAL', `${prefix}: ${message}`, { cause: error, detail });
};

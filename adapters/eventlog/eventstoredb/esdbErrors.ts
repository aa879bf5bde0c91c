import { ShoalError, isShoalError } from '../../../domain';

/** The client's error types (`ErrorType` of @eventstore/db-client) that mean "try again". */
const transient = new Set([
  'unavailable',
  'deadline-exceeded',
  'timeout',
  'not-leader',
  'cancelled',
]);

/**
 * Vendor errors stop here. EventStoreDB client errors leave as ShoalErrors: the server cannot
 * be reached, timed out or is not the leader → `LOG_UNAVAILABLE`, retriable; an append over
 * the server's size limit → `EVENT_INVALID`; access denied → `LOG_UNAVAILABLE`, not retriable;
 * a deleted Shoal stream → `LOG_CORRUPT`; anything else → `LOG_UNAVAILABLE`, not retriable,
 * with the server's message. (`WRONG_EXPECTED_VERSION` is translated where the expectation
 * is known, in the append.)
 */
export const translateEsdbError = (error: unknown, doing: string): ShoalError => {
  if (isShoalError(error)) return error;
  const type = (error as { type?: unknown } | null)?.type;
  const message = `eventstoredb log: ${doing}: ${error instanceof Error ? error.message : String(error)}`;
  const detail = typeof type === 'string' ? { eventstoredb: type } : undefined;
  if (typeof type !== 'string') {
    return new ShoalError('INTERNAL', message, { cause: error });
  }
  if (transient.has(type)) {
    return new ShoalError('LOG_UNAVAILABLE', message, { cause: error, detail });
  }
  if (type === 'maximum-append-size-exceeded') {
    return new ShoalError('EVENT_INVALID', `${message} (append fewer events at a time)`, {
      cause: error,
      detail: { ...detail, field: '(batch)' },
    });
  }
  if (type === 'stream-deleted') {
    return new ShoalError('LOG_CORRUPT', `${message} (a Shoal stream was deleted)`, {
      cause: error,
      detail,
    });
  }
  const hint = type === 'access-denied' ? ' (check the credentials and ACLs)' : '';
  return new ShoalError('LOG_UNAVAILABLE', `${message}${hint}`, {
    cause: error,
    detail,
    retriable: false,
  });
};

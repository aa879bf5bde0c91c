import type { Subscriber, TeardownLogic } from 'rxjs';
import { Observable } from 'rxjs';
import type { AppendOptions, EventLog, Position, RecordedEvent, ShoalEvent } from '../../domain';
import { ShoalError, validateEvent } from '../../domain';

// The parts of the EventLog contract that do not depend on storage, shared by every adapter
// so they reject the same inputs with the same codes and messages.

/** `expectedVersion` reduced to what an adapter must check: one stream, one wanted state. */
export type StreamExpectation = {
  readonly stream: string;
  /** The stream's last `streamVersion`, or -1 when the stream must not exist yet. */
  readonly version: number;
};

/**
 * Validates a batch before anything is written: every event against its schema, and
 * `expectedVersion` against the batch (one stream only). Returns the expectation to check
 * inside the adapter's transaction, or undefined when the append is unconditional.
 */
export const checkBatch = (
  events: readonly ShoalEvent[],
  options: AppendOptions | undefined,
): StreamExpectation | undefined => {
  if (!Array.isArray(events)) {
    throw new ShoalError('EVENT_INVALID', 'append: want an array of events', {
      detail: { field: '(batch)' },
    });
  }
  events.forEach((event, index) => {
    const result = validateEvent(event);
    if (!result.ok) {
      throw new ShoalError('EVENT_INVALID', `events[${index}]: ${result.error.message}`, {
        detail: { ...result.error.detail, index },
      });
    }
  });
  const expected = options?.expectedVersion;
  if (expected === undefined || expected === 'any' || events.length === 0) return undefined;
  if (expected !== 'no-stream' && !(Number.isSafeInteger(expected) && expected >= 0)) {
    throw new ShoalError(
      'EVENT_INVALID',
      `expectedVersion: want a stream version ≥ 0, 'no-stream' or 'any', got ${String(expected)}`,
      { detail: { field: 'expectedVersion' } },
    );
  }
  const stream = (events[0] as ShoalEvent).stream;
  const other = events.find((event) => event.stream !== stream);
  if (other !== undefined) {
    throw new ShoalError(
      'EVENT_INVALID',
      `expectedVersion needs a single-stream batch: got "${stream}" and "${other.stream}"`,
      { detail: { field: 'stream', streams: [stream, other.stream] } },
    );
  }
  return { stream, version: expected === 'no-stream' ? -1 : expected };
};

/** The error for a failed compare-and-swap; `actual` is -1 when the stream does not exist. */
export const wrongExpectedVersion = (expectation: StreamExpectation, actual: number) => {
  const show = (version: number) => (version < 0 ? 'no stream' : `version ${version}`);
  return new ShoalError(
    'WRONG_EXPECTED_VERSION',
    `stream "${expectation.stream}": expected ${show(expectation.version)}, ` +
      `found ${show(actual)}`,
    {
      detail: {
        stream: expectation.stream,
        expected: expectation.version < 0 ? 'no-stream' : expectation.version,
        actual: actual < 0 ? 'no-stream' : actual,
      },
    },
  );
};

export const logClosed = () => new ShoalError('LOG_CLOSED', 'the event log is closed');

/** `from` as the first position to read: 0 and 1 both mean "from the start". */
export const firstPosition = (from: Position | undefined): Position => {
  if (from === undefined) return 1;
  if (!Number.isSafeInteger(from) || from < 0) {
    throw new ShoalError(
      'POSITION_INVALID',
      `invalid position ${String(from)}: want an integer ≥ 0`,
      {
        detail: { position: String(from) },
      },
    );
  }
  return Math.max(from, 1);
};

export const defaultReadLimit = 1000;

export const readLimit = (limit: number | undefined): number => {
  if (limit === undefined) return defaultReadLimit;
  if (!Number.isSafeInteger(limit) || limit < 1) {
    throw new ShoalError(
      'POSITION_INVALID',
      `invalid limit ${String(limit)}: want an integer ≥ 1`,
      {
        detail: { limit: String(limit) },
      },
    );
  }
  return limit;
};

/** Lets timers and I/O run between pages of a long synchronous read. */
export const yieldToEventLoop = (): Promise<void> =>
  new Promise((resolve) => setImmediate(resolve));

/**
 * The Observable an adapter's `subscribe` returns. It fails at once, delivering nothing, when
 * `ensureOpen` throws (the log is closed or failed) or `from` is not a position; otherwise it
 * hands `follow` the first position to deliver, and `follow` delivers events in position order
 * and returns the teardown.
 */
export const subscribeFrom = (
  from: Position | undefined,
  ensureOpen: () => void,
  follow: (first: Position, subscriber: Subscriber<RecordedEvent>) => TeardownLogic,
): Observable<RecordedEvent> =>
  new Observable<RecordedEvent>((subscriber) => {
    let first: Position;
    try {
      ensureOpen();
      first = firstPosition(from);
    } catch (error) {
      subscriber.error(error);
      return undefined;
    }
    return follow(first, subscriber);
  });

/**
 * What an adapter's `open…EventLog` does last: asks the log for its head, so a store that
 * cannot be reached fails the open, and closes the log when it does.
 */
export const reachedOrClosed = async (log: EventLog): Promise<EventLog> => {
  try {
    await log.head();
  } catch (error) {
    await log.close();
    throw error;
  }
  return log;
};

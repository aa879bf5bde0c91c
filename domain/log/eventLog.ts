import type { Observable } from 'rxjs';
import type { Position, RecordedEvent, ShoalEvent } from './event';

/**
 * The stream revision an append expects: the 0-based `streamVersion` of the stream's last
 * event, `'no-stream'` for a stream that must not exist yet, or `'any'` (the default).
 */
export type ExpectedVersion = number | 'no-stream' | 'any';

export type AppendOptions = {
  /**
   * Compare-and-swap on one stream. A number or `'no-stream'` is only valid when every event
   * of the batch has the same stream; otherwise the append fails with `EVENT_INVALID`.
   * `'any'` checks nothing and is valid on any batch.
   */
  readonly expectedVersion?: ExpectedVersion;
};

export type ReadOptions = {
  /**
   * At most this many events, an integer ≥ 1 (default 1000). A page may hold fewer before
   * the end of the log; only an empty page means nothing is at or after `from` yet.
   */
  readonly limit?: number;
};

/**
 * One totally ordered log per cluster: Shoal's source of truth.
 *
 * Contract, kept by every adapter and checked by `describeEventLogContract`:
 * - **Order.** Every event gets a position; positions start at 1 and strictly increase in the
 *   order appends were acknowledged, across all processes writing to the log. Adapters may
 *   leave gaps (option `densePositions: false`); readers never assume `next = prev + 1`.
 * - **Atomic batches.** `append` writes all events of a batch, contiguously, or none.
 * - **Durability.** When `append` resolves, the events survive a crash of the process (kill -9).
 * - **Idempotency.** An event whose `id` is already in the log is not written again; its
 *   original position counts for the result. A batch made entirely of known ids is a no-op.
 * - **Validation.** Every event is checked against its schema before anything is written;
 *   an invalid event fails the whole batch with `EVENT_INVALID`, naming the field.
 * - **Compare-and-swap.** With `expectedVersion`, the batch is written only when the stream's
 *   current version matches; otherwise it fails with `WRONG_EXPECTED_VERSION` (non-retriable;
 *   re-read and decide). Idempotent re-appends of known ids are checked first and succeed.
 * - **Errors.** `LOG_UNAVAILABLE` (retriable) when the backing store cannot be reached,
 *   `LOG_CLOSED` after `close()`, `LOG_CORRUPT` when stored data cannot be decoded.
 */
export interface EventLog {
  /**
   * Appends a batch; resolves with the greatest position among the batch's events, new or
   * already known (so a read at that position reflects the whole batch). An empty batch
   * writes nothing and resolves with the head.
   */
  append(events: readonly ShoalEvent[], options?: AppendOptions): Promise<Position>;

  /**
   * Events with `position >= from`, in order, at most `limit` of them. `from` is an integer
   * ≥ 0 (0 and 1 both mean the start), else `POSITION_INVALID`.
   */
  readBatch(from: Position, options?: ReadOptions): Promise<RecordedEvent[]>;

  /**
   * All events with `position >= from` (default 1) up to the head when iteration starts, in
   * order, read page by page; it ends there even when appends continue.
   */
  read(from?: Position): AsyncIterable<RecordedEvent>;

  /** Every event of one stream, in stream order. */
  readStream(stream: string): Promise<RecordedEvent[]>;

  /**
   * Events with `position >= from`: first those already in the log (catch-up), then new
   * ones as they are appended (live), by this process or any other. No event is missed or
   * delivered twice at the hand-over. Events from other processes arrive within a bounded
   * delay (adapter option `liveDelayMs`). `from` defaults to 1. Errors end the Observable
   * with a `ShoalError`; `close()` completes it.
   */
  subscribe(from?: Position): Observable<RecordedEvent>;

  /** The position of the last event in the log; 0 when it is empty. */
  head(): Promise<Position>;

  /** Releases connections and ends live subscriptions; later calls fail with `LOG_CLOSED`. */
  close(): Promise<void>;
}

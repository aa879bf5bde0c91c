import { createHash } from 'node:crypto';
import type {
  AllStreamResolvedEvent,
  AllStreamSubscription,
  AppendExpectedRevision,
  EventStoreDBClient,
  Position as EsdbPosition,
  ReadPosition,
  RecordedEvent as EsdbRecordedEvent,
} from '@eventstore/db-client';
import {
  ANY,
  BACKWARDS,
  END,
  EventStoreDBClient as Client,
  FORWARDS,
  NO_STREAM,
  START,
  jsonEvent,
  streamNameFilter,
} from '@eventstore/db-client';
import type {
  AppendOptions,
  EventLog,
  EventMetadata,
  Position,
  ReadOptions,
  RecordedEvent,
  ShoalEvent,
} from '../../../domain';
import { ShoalError, isEventType } from '../../../domain';
import type { StreamExpectation } from '../appendRules';
import {
  checkBatch,
  firstPosition,
  logClosed,
  reachedOrClosed,
  readLimit,
  subscribeFrom,
  wrongExpectedVersion,
} from '../appendRules';
import { translateEsdbError } from './esdbErrors';

/**
 * The EventLog on EventStoreDB (gRPC, server 22.6 or later: stream reads must carry `$all`
 * positions). NOT run against a server on the machine it was written on — its contract spec
 * runs when `SHOAL_ESDB_URL` names one.
 *
 * - **Streams.** Shoal stream `s` is EventStoreDB stream `<streamPrefix>s` (default prefix
 *   `shoal-`, so EventStoreDB's category is `shoal` and no Shoal stream can start with `$`).
 *   The event type is Shoal's (`TagPushed`); the data is the event's data as JSON; the
 *   metadata holds Shoal's id, schema version and metadata, plus `$correlationId` and
 *   `$causationId` for EventStoreDB's own projections.
 * - **Ids.** EventStoreDB wants UUIDs: a Shoal id that is a UUID is used as is, any other id
 *   becomes a name-based UUID (SHA-1, RFC 4122 version 5 layout) of itself, so a retry maps to
 *   the same EventStoreDB id.
 * - **Positions** are `$all` commit positions: not dense (`densePositions: false`), bigints on
 *   the wire, converted to numbers; past 2^53 bytes of log (8 PiB) the adapter fails with
 *   `LOG_CORRUPT` rather than round. A read or subscription from a position that is not an
 *   event's own (`last + 1`) starts at the closest record before it and skips what it must.
 * - **Compare-and-swap** maps `expectedVersion` to `expectedRevision` (`'no-stream'` →
 *   `no_stream`, n → `BigInt(n)`, `'any'` → `any`): EventStoreDB enforces it natively.
 * - **Idempotency.** Before writing, the adapter reads the target stream and drops events whose
 *   id is already there (their original positions count), so a retry at any later time is a
 *   no-op. Two appends of the same new id racing each other are deduplicated by EventStoreDB's
 *   own id check, which only covers its recent writes (the idempotency window); the adapter
 *   cannot promise more than that for a race. The read costs one round trip and the length of
 *   the stream (Shoal's streams are short: a blob, a manifest, a tag's history).
 * - **Batches.** A batch on one stream is one append: atomic and contiguous in `$all`. A batch
 *   on several streams is written stream by stream (EventStoreDB 23/24 cannot append to several
 *   streams at once): each part is atomic, the whole is not, and other writers may interleave
 *   (contract option `atomicMultiStreamBatches: false`). A failure part-way leaves the first
 *   parts written; retrying the batch completes it (known ids are skipped). Shoal's services
 *   append single-stream batches only.
 * - **subscribe** follows `$all` with a server-side filter on the stream prefix (which scopes
 *   both "Shoal's events" and this cluster, when several share one database).
 */
export type EventStoreDbEventLogOptions = {
  readonly client: EventStoreDBClient;
  /** Prefix of every Shoal stream in EventStoreDB (default `shoal-`). */
  readonly streamPrefix?: string;
  /** Records per `$all` page for reads and subscription catch-up (default 500). */
  readonly pageSize?: number;
  /** Dispose of the client in `close()` (default false: the caller owns it). */
  readonly disposeClient?: boolean;
};

export type OpenEventStoreDbEventLogOptions = Omit<EventStoreDbEventLogOptions, 'client'> & {
  /** `esdb://host:2113?tls=false`, or a cluster's `esdb+discover://…` string. */
  readonly connectionString: string;
};

export const defaultStreamPrefix = 'shoal-';

type StoredMetadata = {
  readonly shoal: {
    readonly id: string;
    readonly version: number;
    readonly metadata: EventMetadata;
  };
  readonly $correlationId?: string;
  readonly $causationId?: string;
};

const uuidPattern = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

/** EventStoreDB's id for a Shoal id: the id itself when it is a UUID, else a v5-style UUID. */
export const esdbEventId = (id: string): string => {
  if (uuidPattern.test(id)) return id.toLowerCase();
  const hash = createHash('sha1').update('shoal-event-id:').update(id).digest();
  hash[6] = ((hash[6] as number) & 0x0f) | 0x50;
  hash[8] = ((hash[8] as number) & 0x3f) | 0x80;
  const hex = hash.subarray(0, 16).toString('hex');
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`;
};

const maxPosition = BigInt(Number.MAX_SAFE_INTEGER);
/** What servers before 22.6 put in the position of an event read from a stream. */
const noPosition = 18446744073709551615n;

const toPosition = (commit: bigint | undefined, where: string): Position => {
  if (commit === undefined || commit === noPosition || commit < 0n) {
    throw new ShoalError(
      'UNSUPPORTED',
      `eventstoredb log: ${where} came without a $all position: Shoal needs EventStoreDB 22.6 ` +
        'or later (gRPC), which reports positions on stream reads',
    );
  }
  if (commit > maxPosition) {
    throw new ShoalError(
      'LOG_CORRUPT',
      `eventstoredb log: $all position ${commit} is beyond 2^53: Shoal positions are numbers`,
      { detail: { position: commit.toString() } },
    );
  }
  return Number(commit);
};

const at = (position: Position): ReadPosition => ({
  commit: BigInt(position),
  prepare: BigInt(position),
});

/**
 * The EventStoreDB EventLog over a client the caller built (`EventStoreDBClient
 * .connectionString(…)`); see `EventStoreDbEventLogOptions` for the mapping.
 */
export const createEventStoreDbEventLog = (options: EventStoreDbEventLogOptions): EventLog => {
  const { client } = options;
  const prefix = options.streamPrefix ?? defaultStreamPrefix;
  const pageSize = options.pageSize ?? 500;
  let closed = false;
  /** Live subscriptions, each with how to complete it when the log closes. */
  const subscriptions = new Set<{ complete: () => void }>();

  const ensureOpen = () => {
    if (closed) throw logClosed();
  };

  /** A Shoal event from an EventStoreDB record, or undefined when the record is not Shoal's. */
  const decode = (record: EsdbRecordedEvent | undefined): RecordedEvent | undefined => {
    if (record === undefined || !record.streamId.startsWith(prefix)) return undefined;
    if (!isEventType(record.type)) return undefined;
    const meta = record.metadata as Partial<StoredMetadata> | undefined;
    const shoal = meta?.shoal;
    if (!record.isJson || typeof record.data !== 'object' || shoal === undefined) {
      throw new ShoalError(
        'LOG_CORRUPT',
        `eventstoredb log: event ${record.id} in "${record.streamId}" is not a Shoal event`,
        { detail: { stream: record.streamId, id: record.id } },
      );
    }
    return {
      id: shoal.id,
      type: record.type,
      version: shoal.version,
      stream: record.streamId.slice(prefix.length),
      data: record.data,
      metadata: shoal.metadata,
      position: toPosition(record.position?.commit, `event ${record.id}`),
      streamVersion: Number(record.revision),
    } as RecordedEvent;
  };

  const encode = (event: ShoalEvent) =>
    jsonEvent({
      id: esdbEventId(event.id),
      type: event.type,
      data: event.data as Record<string, unknown>,
      metadata: {
        shoal: { id: event.id, version: event.version, metadata: event.metadata },
        ...(event.metadata.correlationId === undefined
          ? {}
          : { $correlationId: event.metadata.correlationId }),
        ...(event.metadata.causationId === undefined
          ? {}
          : { $causationId: event.metadata.causationId }),
      } satisfies StoredMetadata,
    });

  const readShoalStream = async (stream: string): Promise<RecordedEvent[]> => {
    const events: RecordedEvent[] = [];
    try {
      for await (const resolved of client.readStream(`${prefix}${stream}`, {
        direction: FORWARDS,
        fromRevision: START,
      })) {
        const event = decode(resolved.event);
        if (event !== undefined) events.push(event);
      }
    } catch (error) {
      if ((error as { type?: string }).type === 'stream-not-found') return [];
      throw translateEsdbError(error, `reading stream "${stream}"`);
    }
    return events;
  };

  /** One page of `$all` records from `start` (inclusive), oldest first. */
  const readAllPage = async (start: ReadPosition, maxCount: number) => {
    const page: AllStreamResolvedEvent[] = [];
    for await (const resolved of client.readAll({
      direction: FORWARDS,
      fromPosition: start,
      maxCount,
    })) {
      page.push(resolved);
    }
    return page;
  };

  /**
   * The first page of `$all` at or after Shoal position `from`. A position that is not a
   * record's own (the usual `last + 1`) is refused by the server; then the page starts at the
   * record before it, and failing that at the start of `$all` (slow, but never wrong).
   */
  const firstPage = async (from: Position) => {
    const starts: ReadPosition[] = from <= 1 ? [START] : [at(from), at(from - 1), START];
    let lastError: unknown;
    for (const start of starts) {
      try {
        return await readAllPage(start, pageSize);
      } catch (error) {
        const type = (error as { type?: string }).type;
        if (type === 'unavailable' || type === 'deadline-exceeded' || type === 'timeout') {
          throw translateEsdbError(error, 'reading $all');
        }
        lastError = error;
      }
    }
    throw translateEsdbError(lastError, 'reading $all');
  };

  /**
   * Shoal events with `position >= from`, page by page, until `$all` ends (or `until` is
   * passed). Yields each page's Shoal events and the last record's position (for resuming).
   */
  async function* pages(
    from: Position,
    until = Number.POSITIVE_INFINITY,
  ): AsyncGenerator<{ events: RecordedEvent[]; last: EsdbPosition | undefined }> {
    let page = await firstPage(from);
    let previous = 0;
    for (;;) {
      ensureOpen();
      const events: RecordedEvent[] = [];
      let last: EsdbPosition | undefined;
      for (const resolved of page) {
        if (resolved.event === undefined) continue;
        last = resolved.event.position;
        const event = decode(resolved.event);
        if (event === undefined || event.position < from || event.position > until) continue;
        if (event.position <= previous) {
          throw new ShoalError(
            'LOG_CORRUPT',
            `eventstoredb log: position ${event.position} after ${previous}: this adapter needs ` +
              'every event in $all to have its own, increasing commit position',
            { detail: { position: event.position, previous } },
          );
        }
        previous = event.position;
        events.push(event);
      }
      yield { events, last };
      const pastEnd = last !== undefined && Number(last.commit) > until;
      if (page.length < pageSize || last === undefined || pastEnd) return;
      // Resume after the last record: reading from it again returns it first.
      const next = await readAllPage(last, pageSize + 1).catch((error: unknown) => {
        throw translateEsdbError(error, 'reading $all');
      });
      page = next.filter(
        (r) =>
          r.event?.position === undefined ||
          r.event.position.commit !== last?.commit ||
          r.event.position.prepare !== last?.prepare,
      );
      if (page.length === 0) return;
    }
  }

  /** The position of the last Shoal event, 0 when there is none. */
  const lastShoalPosition = async (): Promise<Position> => {
    try {
      let start: ReadPosition = END;
      for (;;) {
        const page: AllStreamResolvedEvent[] = [];
        for await (const resolved of client.readAll({
          direction: BACKWARDS,
          fromPosition: start,
          maxCount: pageSize,
        })) {
          page.push(resolved);
        }
        for (const resolved of page) {
          const event = decode(resolved.event);
          if (event !== undefined) return event.position;
        }
        const oldest = page[page.length - 1]?.event?.position;
        if (page.length < pageSize || oldest === undefined) return 0;
        start = oldest;
      }
    } catch (error) {
      throw translateEsdbError(error, 'reading the end of $all');
    }
  };

  const appendToStream = async (
    stream: string,
    events: readonly ShoalEvent[],
    expectation: StreamExpectation | undefined,
  ): Promise<Position> => {
    const expectedRevision: AppendExpectedRevision =
      expectation === undefined
        ? ANY
        : expectation.version < 0
          ? NO_STREAM
          : BigInt(expectation.version);
    try {
      const result = await client.appendToStream(`${prefix}${stream}`, events.map(encode), {
        expectedRevision,
      });
      return toPosition(result.position?.commit, `the append to "${stream}"`);
    } catch (error) {
      const wrong = error as { type?: string; actualVersion?: bigint | string };
      if (wrong.type === 'wrong-expected-version' && expectation !== undefined) {
        const actual = typeof wrong.actualVersion === 'bigint' ? Number(wrong.actualVersion) : -1;
        throw wrongExpectedVersion(expectation, actual);
      }
      throw translateEsdbError(error, `appending to "${stream}"`);
    }
  };

  const log: EventLog = {
    async append(batch: readonly ShoalEvent[], appendOptions?: AppendOptions) {
      ensureOpen();
      const expectation = checkBatch(batch, appendOptions);
      if (batch.length === 0) return log.head();
      // Group by stream, in batch order; one read of each stream tells which ids it holds.
      const byStream = new Map<string, ShoalEvent[]>();
      for (const event of batch) {
        const events = byStream.get(event.stream);
        if (events === undefined) byStream.set(event.stream, [event]);
        else events.push(event);
      }
      const known = new Map<string, Position>();
      const fresh = new Map<string, ShoalEvent[]>();
      for (const [stream, events] of byStream) {
        const existing = await readShoalStream(stream);
        ensureOpen();
        for (const event of existing) known.set(event.id, event.position);
        const seen = new Set<string>();
        const todo = events.filter((event) => {
          if (known.has(event.id) || seen.has(event.id)) return false;
          seen.add(event.id);
          return true;
        });
        if (todo.length > 0) fresh.set(stream, todo);
      }
      let last = Math.max(0, ...batch.map((event) => known.get(event.id) ?? 0));
      for (const [stream, events] of fresh) {
        last = Math.max(last, await appendToStream(stream, events, expectation));
        ensureOpen();
      }
      return last;
    },

    async readBatch(from: Position, readOptions?: ReadOptions) {
      ensureOpen();
      const start = firstPosition(from);
      const limit = readLimit(readOptions?.limit);
      const out: RecordedEvent[] = [];
      for await (const { events } of pages(start)) {
        for (const event of events) {
          out.push(event);
          if (out.length === limit) return out;
        }
      }
      return out;
    },

    async *read(from?: Position) {
      ensureOpen();
      const start = firstPosition(from);
      const end = await lastShoalPosition();
      if (end < start) return;
      for await (const { events } of pages(start, end)) yield* events;
    },

    async readStream(stream: string) {
      ensureOpen();
      return readShoalStream(stream);
    },

    subscribe(from?: Position) {
      return subscribeFrom(from, ensureOpen, (start, subscriber) => {
        let done = false;
        let subscription: AllStreamSubscription | undefined;
        let delivered = start - 1;
        const end = () => {
          done = true;
          subscriptions.delete(handle);
          void subscription?.unsubscribe().catch(() => undefined);
        };
        const handle = {
          complete: () => {
            if (done) return;
            end();
            subscriber.complete();
          },
        };
        subscriptions.add(handle);
        const fail = (error: unknown) => {
          if (done) return;
          end();
          subscriber.error(translateEsdbError(error, 'following $all'));
        };
        const deliver = (event: RecordedEvent | undefined) => {
          if (done || event === undefined || event.position <= delivered) return;
          delivered = event.position;
          subscriber.next(event);
        };
        // Catch up by reading, then follow from the last record read: a subscription starts
        // after a record's own position, which a bare `from` may not be.
        void (async () => {
          try {
            let resumeAfter: ReadPosition | undefined;
            for await (const { events, last } of pages(start)) {
              if (done) return;
              events.forEach(deliver);
              if (last !== undefined) resumeAfter = last;
            }
            if (done) return;
            subscription = client.subscribeToAll({
              fromPosition: resumeAfter ?? START,
              filter: streamNameFilter({ prefixes: [prefix] }),
            });
            subscription.on('data', (resolved: AllStreamResolvedEvent) => {
              try {
                deliver(decode(resolved.event));
              } catch (error) {
                fail(error);
              }
            });
            subscription.on('error', fail);
          } catch (error) {
            fail(error);
          }
        })();
        return end;
      });
    },

    async head() {
      ensureOpen();
      return lastShoalPosition();
    },

    async close() {
      if (closed) return;
      closed = true;
      for (const subscription of [...subscriptions]) subscription.complete();
      if (options.disposeClient === true) await client.dispose().catch(() => undefined);
    },
  };
  return log;
};

/** Opens the EventStoreDB log of a connection string; the log owns (and disposes) its client. */
export const openEventStoreDbEventLog = async (
  options: OpenEventStoreDbEventLogOptions,
): Promise<EventLog> => {
  const { connectionString, ...rest } = options;
  let client: EventStoreDBClient;
  try {
    client = Client.connectionString(connectionString);
  } catch (error) {
    throw new ShoalError(
      'CONFIG_INVALID',
      `eventstoredb log: bad connection string: ${(error as Error).message}`,
      { cause: error },
    );
  }
  return reachedOrClosed(createEventStoreDbEventLog({ ...rest, client, disposeClient: true }));
};

import type { Subscriber } from 'rxjs';
import type {
  AppendOptions,
  EventLog,
  Position,
  ReadOptions,
  RecordedEvent,
  ShoalEvent,
} from '../../../domain';
import {
  checkBatch,
  firstPosition,
  logClosed,
  readLimit,
  subscribeFrom,
  wrongExpectedVersion,
} from '../appendRules';

export type MemoryEventLogOptions = {
  /** Events per page for `read` (default 1000). */
  readonly pageSize?: number;
};

type Feed = {
  /** Position of the next event to deliver. */
  next: Position;
  done: boolean;
  delivering: boolean;
  readonly subscriber: Subscriber<RecordedEvent>;
};

const deepFreeze = <T>(value: T): T => {
  if (typeof value === 'object' && value !== null && !Object.isFrozen(value)) {
    Object.freeze(value);
    for (const child of Object.values(value)) deepFreeze(child);
  }
  return value;
};

/**
 * An EventLog in memory, for unit tests and the dev cluster's throwaway runs. It keeps the
 * whole contract except durability: positions are dense (1, 2, 3, …), events are stored as
 * their JSON round-trip (what a persistent log would hand back) and frozen, so a reader that
 * mutates an event fails here instead of corrupting state silently.
 */
export const createMemoryEventLog = (options: MemoryEventLogOptions = {}): EventLog => {
  const pageSize = options.pageSize ?? 1000;
  const events: RecordedEvent[] = [];
  const positionById = new Map<string, Position>();
  const streams = new Map<string, RecordedEvent[]>();
  const feeds = new Set<Feed>();
  let closed = false;

  const ensureOpen = () => {
    if (closed) throw logClosed();
  };

  const streamVersion = (stream: string) => (streams.get(stream)?.length ?? 0) - 1;

  // Delivery is serialized per feed: `next` only moves forward, so an event appended while a
  // feed is being delivered (even by its own subscriber) is picked up by the same loop.
  const deliver = (feed: Feed) => {
    if (feed.delivering) return;
    feed.delivering = true;
    try {
      while (!feed.done && feed.next <= events.length) {
        const event = events[feed.next - 1] as RecordedEvent;
        feed.next += 1;
        feed.subscriber.next(event);
      }
    } finally {
      feed.delivering = false;
    }
  };

  const copy = <T>(value: T): T => JSON.parse(JSON.stringify(value)) as T;
  const record = (event: ShoalEvent, position: Position, version: number): RecordedEvent =>
    deepFreeze({
      id: event.id,
      type: event.type,
      version: event.version,
      stream: event.stream,
      data: copy(event.data),
      metadata: copy(event.metadata),
      position,
      streamVersion: version,
    } as RecordedEvent);

  return {
    async append(batch: readonly ShoalEvent[], appendOptions?: AppendOptions) {
      ensureOpen();
      const expectation = checkBatch(batch, appendOptions);
      const ids = new Set<string>();
      const fresh = batch.filter((event) => {
        if (positionById.has(event.id) || ids.has(event.id)) return false;
        ids.add(event.id);
        return true;
      });
      if (fresh.length > 0) {
        if (expectation !== undefined) {
          const actual = streamVersion(expectation.stream);
          if (actual !== expectation.version) throw wrongExpectedVersion(expectation, actual);
        }
        for (const event of fresh) {
          const recorded = record(event, events.length + 1, streamVersion(event.stream) + 1);
          events.push(recorded);
          positionById.set(recorded.id, recorded.position);
          const stream = streams.get(recorded.stream);
          if (stream === undefined) streams.set(recorded.stream, [recorded]);
          else stream.push(recorded);
        }
        for (const feed of feeds) queueMicrotask(() => deliver(feed));
      }
      if (batch.length === 0) return events.length;
      let last = 0;
      for (const event of batch) last = Math.max(last, positionById.get(event.id) as Position);
      return last;
    },

    async readBatch(from: Position, readOptions?: ReadOptions) {
      ensureOpen();
      const start = firstPosition(from);
      return events.slice(start - 1, start - 1 + readLimit(readOptions?.limit));
    },

    async *read(from?: Position) {
      ensureOpen();
      const end = events.length;
      for (let next = firstPosition(from); next <= end; next += pageSize) {
        ensureOpen();
        yield* events.slice(next - 1, Math.min(next - 1 + pageSize, end));
      }
    },

    async readStream(stream: string) {
      ensureOpen();
      return [...(streams.get(stream) ?? [])];
    },

    subscribe(from?: Position) {
      return subscribeFrom(from, ensureOpen, (next, subscriber) => {
        const feed: Feed = { next, done: false, delivering: false, subscriber };
        feeds.add(feed);
        queueMicrotask(() => deliver(feed));
        return () => {
          feed.done = true;
          feeds.delete(feed);
        };
      });
    },

    async head() {
      ensureOpen();
      return events.length;
    },

    async close() {
      if (closed) return;
      closed = true;
      for (const feed of feeds) {
        feed.done = true;
        feed.subscriber.complete();
      }
      feeds.clear();
    },
  };
};

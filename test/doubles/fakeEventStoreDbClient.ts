import { EventEmitter } from 'node:events';
import type { EventStoreDBClient } from '@eventstore/db-client';

// An in-memory stand-in for the few EventStoreDB client calls the adapter makes, written from
// the client's documented behaviour: `$all` positions are byte offsets (not dense; commit ==
// prepare for each event), reading `$all` from a position that is not a record's start fails,
// system events sit between Shoal's, stream reads carry positions (server 22.6+), expected
// revisions are enforced. It tests the adapter's mapping, NOT EventStoreDB itself.

type Position = { commit: bigint; prepare: bigint };
type Record = {
  streamId: string;
  id: string;
  revision: bigint;
  type: string;
  data: unknown;
  metadata: unknown;
  isJson: true;
  created: Date;
  position: Position;
};

const clientError = (type: string, message: string, extra: object = {}) =>
  Object.assign(new Error(message), { type }, extra);

export const createFakeEventStoreDbClient = () => {
  const all: Record[] = [];
  const streams = new Map<string, Record[]>();
  const live = new Set<(record: Record) => void>();
  let offset = 1000n;

  const write = (
    streamId: string,
    event: { id: string; type: string; data: unknown; metadata: unknown },
  ) => {
    const stream = streams.get(streamId) ?? [];
    const record: Record = {
      streamId,
      id: event.id,
      revision: BigInt(stream.length),
      type: event.type,
      data: JSON.parse(JSON.stringify(event.data)) as unknown,
      metadata: JSON.parse(JSON.stringify(event.metadata ?? null)) as unknown,
      isJson: true,
      created: new Date(),
      position: { commit: offset, prepare: offset },
    };
    offset += BigInt(100 + (all.length % 7) * 13);
    stream.push(record);
    streams.set(streamId, stream);
    all.push(record);
    for (const deliver of live) deliver(record);
    return record;
  };

  const indexAt = (position: unknown): number => {
    if (position === 'start') return 0;
    if (position === 'end') return all.length;
    const commit = (position as Position).commit;
    const index = all.findIndex((r) => r.position.commit >= commit);
    if (index === -1) {
      if (all.length > 0 && commit <= offset) throw clientError('unknown', 'invalid position');
      return all.length;
    }
    if ((all[index] as Record).position.commit !== commit) {
      throw clientError('unknown', 'Trying to read from an invalid position.');
    }
    return index;
  };

  async function* iterate<T>(items: T[]): AsyncGenerator<T> {
    for (const item of items) {
      await Promise.resolve();
      yield item;
    }
  }

  /** A read that fails when iterated, as the client's streaming reads do. */
  const failing = (error: unknown): AsyncIterable<never> => ({
    [Symbol.asyncIterator]: () => ({ next: () => Promise.reject(error) }),
  });

  const client = {
    /** Writes a system event, as the server does now and then. */
    systemEvent: () =>
      write('$stats-127.0.0.1:2113', {
        id: 'sys',
        type: '$statsCollected',
        data: {},
        metadata: {},
      }),

    async appendToStream(
      streamId: string,
      events: { id: string; type: string; data: unknown; metadata: unknown }[],
      options: { expectedRevision?: unknown } = {},
    ) {
      await Promise.resolve();
      const stream = streams.get(streamId) ?? [];
      const expected = options.expectedRevision ?? 'any';
      const current = stream.length === 0 ? 'no_stream' : BigInt(stream.length - 1);
      const ok =
        expected === 'any' ||
        (expected === 'no_stream' && stream.length === 0) ||
        (typeof expected === 'bigint' && current === expected);
      if (!ok) {
        throw clientError('wrong-expected-version', 'Wrong expected version', {
          expectedVersion: expected,
          actualVersion: current,
        });
      }
      if (all.length % 3 === 0) client.systemEvent();
      let last: Record | undefined;
      for (const event of events) last = write(streamId, event);
      return {
        success: true,
        nextExpectedRevision: last?.revision ?? -1n,
        position: last?.position,
      };
    },

    readStream(streamId: string) {
      const stream = streams.get(streamId);
      if (stream === undefined) {
        return failing(clientError('stream-not-found', `${streamId} not found`));
      }
      return iterate(stream.map((event) => ({ event })));
    },

    readAll(options: { direction?: string; fromPosition?: unknown; maxCount?: number }) {
      const max = Number(options.maxCount ?? Number.MAX_SAFE_INTEGER);
      if (options.direction === 'backwards') {
        const end = options.fromPosition === 'end' ? all.length : indexAt(options.fromPosition);
        const items = all.slice(Math.max(0, end - max), end).reverse();
        return iterate(items.map((event) => ({ event })));
      }
      let start: number;
      try {
        start = indexAt(options.fromPosition ?? 'start');
      } catch (error) {
        return failing(error);
      }
      return iterate(all.slice(start, start + max).map((event) => ({ event })));
    },

    subscribeToAll(options: { fromPosition?: unknown; filter?: { prefixes?: string[] } }) {
      const emitter = new EventEmitter() as EventEmitter & { unsubscribe(): Promise<void> };
      const prefixes = options.filter?.prefixes ?? [''];
      const wanted = (r: Record) => prefixes.some((p) => r.streamId.startsWith(p));
      let queue: Record[] = [];
      let ready = false;
      const deliver = (record: Record) => {
        if (!wanted(record)) return;
        if (!ready) queue.push(record);
        else emitter.emit('data', { event: record });
      };
      live.add(deliver);
      emitter.unsubscribe = async () => {
        live.delete(deliver);
      };
      const from = options.fromPosition ?? 'start';
      const start = from === 'start' ? 0 : indexAt(from) + 1;
      queue = all.slice(start).filter(wanted);
      setImmediate(() => {
        for (const record of queue) emitter.emit('data', { event: record });
        queue = [];
        ready = true;
      });
      return emitter;
    },

    async dispose() {
      live.clear();
    },
  };
  return client as typeof client & EventStoreDBClient;
};

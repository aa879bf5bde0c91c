import { randomUUID } from 'node:crypto';
import type { Admin, Batch, Consumer, Kafka, Producer } from 'kafkajs';
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
import {
  checkBatch,
  firstPosition,
  logClosed,
  reachedOrClosed,
  readLimit,
  subscribeFrom,
  wrongExpectedVersion,
  yieldToEventLoop,
} from '../appendRules';
import type { KafkaClientOptions } from './kafkaClient';
import { createKafkaClient, kafkaMinSessionMs } from './kafkaClient';
import { translateKafkaError } from './kafkaErrors';
import { ensureLogTopic, whileTopicNew } from './kafkaTopic';
import type { BatchOutcome } from './logIndex';
import { createLogIndex } from './logIndex';
import { decodeFrame, encodeBatch } from './recordCodec';

/**
 * The EventLog on Apache Kafka: one single-partition topic per cluster, so the log has one
 * total order; position = offset + 1.
 *
 * **Idempotency and compare-and-swap are decided by the log itself.** Kafka cannot append
 * "only if this id is new" or "only if the stream is at version N", so every record carries
 * its batch's framing and condition (headers, see `logIndex.ts`), and every reader judges
 * each batch, in offset order, against the events visible before it: a repeated id, or a
 * condition the stream no longer meets, makes the record (or the whole batch) void. All
 * processes read the same records in the same order, so they all see the same visible log.
 * An appender produces its batch, then reads the topic up to the batch's offsets and learns
 * what the log decided: written (its positions), duplicate (the original positions), or
 * conflict (`WRONG_EXPECTED_VERSION`). Void records leave gaps: positions are not dense.
 *
 * **Atomic batches.** One `send` carries one Kafka record batch for the one partition; the
 * broker appends a record batch whole, at consecutive offsets, or not at all.
 *
 * **Durability.** The producer is idempotent with `acks=all`, one request in flight; the
 * topic has `min.insync.replicas` ≥ 2 when its replication factor is 3 or more, so an
 * acknowledged append is on at least two brokers.
 *
 * **Cost.** Each instance consumes the whole topic from offset 0 when it starts (the startup
 * scan; about 75,000 events/s on a loaded 2-core test machine) and then follows it, keeping
 * every visible event in memory as JSON with the id and stream indexes: about 0.8 KB per
 * event (measured for TagPushed events on distinct streams), so ~800 MB per million events in
 * every process that opens the log. Reads never go back to the broker. This is the price of
 * deciding conditions from the log; a log that outgrows it needs snapshots of the index and
 * reads from the broker (not built yet).
 *
 * Consumption uses a consumer group with a random id per instance that never commits offsets
 * (kafkajs cannot fetch without one); after a consumer restart it seeks back to where the
 * index stopped. Brokers default `group.initial.rebalance.delay.ms` to 3 s, which delays each
 * instance's start by that much; set it to 0 for many short-lived instances (the test broker
 * does).
 */
export type KafkaEventLogOptions = {
  /** A kafkajs client; the log creates its own producer, consumer and admin from it. */
  readonly kafka: Kafka;
  /** The cluster's topic. */
  readonly topic: string;
  /** Create the topic when it is missing (default true); otherwise a missing topic fails. */
  readonly createTopic?: boolean;
  /** Replication factor of a topic this log creates (default 3; 1 for a one-broker test). */
  readonly replicationFactor?: number;
  /**
   * `min.insync.replicas` of a topic this log creates; default: half the replicas, rounded
   * up (1 for 1 or 2 replicas, 2 for 3 or 4, 3 for 5).
   */
  readonly minInsyncReplicas?: number;
  /**
   * How long a call may wait for the topic to be read up to the offset it needs (its own
   * append, or the end of the topic for a read) without the consumer making progress, in ms;
   * then it fails with the retriable `LOG_UNAVAILABLE`. Default 30000.
   */
  readonly stallTimeoutMs?: number;
  /** Broker-side wait for a fetch with no new records, in ms (default 500; bounds close()). */
  readonly fetchMaxWaitMs?: number;
  /** Events per page for `read` and subscription catch-up (default 1000). */
  readonly pageSize?: number;
  /**
   * Producer retries of one append before it fails with `LOG_UNAVAILABLE` (default 10, about
   * 7 s: waits start at 100 ms and double up to 1 s, so an append resumes within a second of
   * a new partition leader being elected). An append that failed so may still land; retrying
   * it is safe because the log ignores ids it already holds.
   */
  readonly producerRetries?: number;
};

/**
 * Retries of the log's producer and its own consumer: from 100 ms, never more than a second
 * apart (kafkajs's default doubles from 300 ms), ten in all (about 7 s).
 */
const quickRetries = { retries: 10, initialRetryTime: 100, maxRetryTime: 1000 };

export type OpenKafkaEventLogOptions = Omit<KafkaEventLogOptions, 'kafka'> & KafkaClientOptions;

export const defaultKafkaTopic = 'shoal-log';

const defaultStallTimeoutMs = 30_000;

type Waiter = {
  readonly offset: number;
  readonly since: number;
  readonly resolve: () => void;
  readonly reject: (error: unknown) => void;
};

type Feed = {
  /** The next position to deliver. */
  next: Position;
  done: boolean;
  running: boolean;
  again: boolean;
  readonly subscriber: Subscriber<RecordedEvent>;
};

const unavailable = (message: string, detail?: Record<string, unknown>) =>
  new ShoalError('LOG_UNAVAILABLE', `kafka log: ${message}`, { detail });

/**
 * The Kafka EventLog over an injected kafkajs client. It starts connecting at once; calls
 * wait for the start, and fail with its error when it failed. See `KafkaEventLogOptions`.
 */
export const createKafkaEventLog = (options: KafkaEventLogOptions): EventLog => {
  const { kafka, topic } = options;
  const stallTimeoutMs = options.stallTimeoutMs ?? defaultStallTimeoutMs;
  const pageSize = options.pageSize ?? 1000;
  const replicationFactor = options.replicationFactor ?? 3;
  const index = createLogIndex();

  const admin: Admin = kafka.admin();
  const producer: Producer = kafka.producer({
    idempotent: true,
    maxInFlightRequests: 1,
    allowAutoTopicCreation: false,
    retry: { ...quickRetries, retries: options.producerRetries ?? quickRetries.retries },
  });
  const consumer: Consumer = kafka.consumer({
    groupId: `shoal-log-${randomUUID()}`,
    // A group of one (this process). After a broker restart the coordinator waits for the
    // members it remembers before the group can fetch again: with Kafka's 30 s defaults a
    // push waited ~30 s for a rejoin. The broker's shortest session keeps that wait short.
    sessionTimeout: kafkaMinSessionMs,
    rebalanceTimeout: kafkaMinSessionMs,
    heartbeatInterval: 1000,
    allowAutoTopicCreation: false,
    maxWaitTimeInMs: options.fetchMaxWaitMs ?? 500,
    maxBytesPerPartition: 8 * 1024 * 1024,
    maxBytes: 16 * 1024 * 1024,
    // A fetch from a leader that died makes the consumer restart: an append waiting to read
    // its batch back resumes soon after a new leader is elected.
    retry: quickRetries,
  });

  let closed = false;
  /** Set when the log cannot go on (the consumer stopped for good, or the topic is corrupt). */
  let failure: ShoalError | undefined;
  /** The last error the consumer restarted after, for the message of a stall. */
  let lastCrash: unknown;
  let lastProgressAt = Date.now();
  const waiters = new Set<Waiter>();
  const feeds = new Set<Feed>();
  /** Appends waiting for the log's decision on their batch. */
  const outcomes = new Map<string, { outcome?: BatchOutcome }>();
  let watchdog: NodeJS.Timeout | undefined;

  const ensureOpen = () => {
    if (closed) throw logClosed();
    if (failure !== undefined) throw failure;
  };

  const fail = (error: ShoalError) => {
    if (failure !== undefined || closed) return;
    failure = error;
    for (const waiter of waiters) waiter.reject(error);
    waiters.clear();
    for (const feed of feeds) {
      feed.done = true;
      feed.subscriber.error(error);
    }
    feeds.clear();
    void consumer.stop().catch(() => undefined);
  };

  // --- Following the topic -------------------------------------------------------------

  const wake = () => {
    for (const waiter of waiters) {
      if (index.scanned >= waiter.offset) {
        waiters.delete(waiter);
        waiter.resolve();
      }
    }
    for (const feed of feeds) void pump(feed);
  };

  const checkStalls = () => {
    const now = Date.now();
    for (const waiter of waiters) {
      if (now - Math.max(waiter.since, lastProgressAt) < stallTimeoutMs) continue;
      waiters.delete(waiter);
      const cause = lastCrash instanceof Error ? `; last consumer error: ${lastCrash.message}` : '';
      waiter.reject(
        unavailable(
          `the topic was not read up to offset ${waiter.offset} within ${stallTimeoutMs} ms ` +
            `(read up to ${index.scanned})${cause}`,
          { offset: waiter.offset, scanned: index.scanned },
        ),
      );
    }
    if (waiters.size === 0 && watchdog !== undefined) {
      clearInterval(watchdog);
      watchdog = undefined;
    }
  };

  /** Resolves once every record below `offset` has been read and judged. */
  const untilScanned = (offset: number): Promise<void> => {
    if (failure !== undefined) return Promise.reject(failure);
    if (index.scanned >= offset) return Promise.resolve();
    return new Promise<void>((resolve, reject) => {
      waiters.add({ offset, since: Date.now(), resolve, reject });
      if (watchdog === undefined) {
        watchdog = setInterval(checkStalls, Math.min(1000, stallTimeoutMs));
        watchdog.unref();
      }
    });
  };

  const eachBatch = async ({ batch }: { batch: Batch }) => {
    if (failure !== undefined || closed) return;
    try {
      for (const message of batch.messages) {
        const offset = Number(message.offset);
        if (index.scanned === 0 && offset > 0) {
          throw new ShoalError(
            'LOG_CORRUPT',
            `kafka log: topic "${topic}" starts at offset ${offset}: records were deleted ` +
              '(retention or delete-records); the log is incomplete',
            { detail: { topic, offset } },
          );
        }
        const decided = index.ingest(
          offset,
          decodeFrame(message.headers),
          message.value === null ? null : message.value.toString('utf8'),
        );
        if (decided !== undefined) {
          const waiting = outcomes.get(decided.batchId);
          if (waiting !== undefined && waiting.outcome === undefined) {
            waiting.outcome = decided.outcome;
          }
        }
      }
    } catch (error) {
      fail(translateKafkaError(error, 'reading the topic'));
      return;
    }
    lastProgressAt = Date.now();
    wake();
  };

  // --- Starting -------------------------------------------------------------------------

  const start = async () => {
    try {
      await admin.connect();
      await ensureLogTopic(admin, topic, {
        createTopic: options.createTopic,
        replicationFactor,
        minInsyncReplicas: options.minInsyncReplicas,
      });
      await producer.connect();
      await consumer.connect();
      // Just created on a cluster of several brokers, the topic may be unknown for a moment
      // to the broker the consumer asks.
      await whileTopicNew(() => consumer.subscribe({ topic, fromBeginning: true }));
      consumer.on(consumer.events.GROUP_JOIN, () => {
        // A restarted consumer has no committed offset and would start over at 0: resume
        // where the index stopped instead (records below it would be ignored anyway).
        if (index.scanned > 0) {
          consumer.seek({ topic, partition: 0, offset: String(index.scanned) });
        }
      });
      consumer.on(consumer.events.CRASH, (event) => {
        lastCrash = event.payload.error;
        if (!event.payload.restart) {
          fail(translateKafkaError(event.payload.error, 'following the topic'));
        }
      });
      await consumer.run({ autoCommit: false, eachBatch });
    } catch (error) {
      throw translateKafkaError(error, `opening topic "${topic}"`);
    }
  };

  const started = start();
  // Callers see the failure through `ready()`; this only keeps it from being unhandled.
  started.catch(() => undefined);

  const ready = async () => {
    ensureOpen();
    await started;
    ensureOpen();
  };

  /** Waits until the index holds every record the topic held when this was called. */
  const syncToEnd = async () => {
    await ready();
    let end: number;
    try {
      const offsets = await admin.fetchTopicOffsets(topic);
      end = Number(offsets.find((o) => o.partition === 0)?.high ?? 0);
    } catch (error) {
      throw translateKafkaError(error, 'reading the end of the topic');
    }
    await untilScanned(end);
    ensureOpen();
  };

  // --- Subscriptions --------------------------------------------------------------------

  const stopFeed = (feed: Feed) => {
    feed.done = true;
    feeds.delete(feed);
  };

  const pump = async (feed: Feed): Promise<void> => {
    if (feed.running) {
      feed.again = true;
      return;
    }
    feed.running = true;
    try {
      await ready();
      do {
        feed.again = false;
        while (!feed.done && feed.next <= index.decided) {
          const events = index.slice(feed.next, index.decided + 1, pageSize);
          feed.next =
            events.length === pageSize
              ? (events[events.length - 1] as RecordedEvent).position + 1
              : index.decided + 1;
          for (const event of events) {
            if (feed.done) return;
            feed.subscriber.next(event);
          }
          if (events.length === pageSize) await yieldToEventLoop();
        }
      } while (feed.again && !feed.done);
    } catch (error) {
      if (!feed.done) {
        stopFeed(feed);
        feed.subscriber.error(translateKafkaError(error, 'following the log'));
      }
    } finally {
      feed.running = false;
    }
  };

  // --- The port -------------------------------------------------------------------------

  const positionsOf = (batch: readonly ShoalEvent[]): Position => {
    let last = 0;
    for (const event of batch) {
      const position = index.positionOf(event.id);
      if (position === undefined) {
        throw new ShoalError('INTERNAL', `kafka log: event ${event.id} has no position`);
      }
      last = Math.max(last, position);
    }
    return last;
  };

  const log: EventLog = {
    async append(batch: readonly ShoalEvent[], appendOptions?: AppendOptions) {
      ensureOpen();
      const expectation = checkBatch(batch, appendOptions);
      await ready();
      if (batch.length === 0) return log.head();
      // Fast path from what this process has read so far. Known ids stay known, and stream
      // versions only grow, so both early answers hold whatever the index has not read yet.
      const ids = new Set<string>();
      const fresh = batch.filter((event) => {
        if (ids.has(event.id) || index.positionOf(event.id) !== undefined) return false;
        ids.add(event.id);
        return true;
      });
      if (fresh.length === 0) return positionsOf(batch);
      if (expectation !== undefined) {
        const actual = index.versionOf(expectation.stream);
        if (actual > expectation.version) throw wrongExpectedVersion(expectation, actual);
      }

      const batchId = randomUUID();
      const waiting: { outcome?: BatchOutcome } = {};
      outcomes.set(batchId, waiting);
      try {
        let baseOffset: number;
        try {
          const sent = await producer.send({
            topic,
            acks: -1,
            messages: encodeBatch(batchId, fresh, expectation?.version),
          });
          baseOffset = Number(sent[0]?.baseOffset);
        } catch (error) {
          throw translateKafkaError(error, 'appending');
        }
        // The consumer may have read the batch before the producer's acknowledgement came
        // back, and a subscriber may have acted on it (even closed the log): a decided batch
        // has its answer whatever happened since.
        if (waiting.outcome === undefined) {
          ensureOpen();
          if (!Number.isSafeInteger(baseOffset) || baseOffset < 0) {
            throw unavailable(`the broker acknowledged the batch without an offset`);
          }
          await untilScanned(baseOffset + fresh.length);
        }
        const outcome = waiting.outcome;
        if (outcome === undefined) {
          // Acknowledged, yet not where the broker said: nothing is known about it. Retrying
          // is safe (ids are idempotent) and tells.
          throw unavailable(
            `batch ${batchId} was acknowledged at offset ${baseOffset} but is not there`,
            { offset: baseOffset },
          );
        }
        if (outcome.kind === 'conflict') {
          throw wrongExpectedVersion(
            expectation ?? { stream: outcome.stream, version: -1 },
            outcome.actual,
          );
        }
        return positionsOf(batch);
      } finally {
        outcomes.delete(batchId);
      }
    },

    async readBatch(from: Position, readOptions?: ReadOptions) {
      ensureOpen();
      const start = firstPosition(from);
      const limit = readLimit(readOptions?.limit);
      await syncToEnd();
      return index.slice(start, index.decided + 1, limit);
    },

    async *read(from?: Position) {
      ensureOpen();
      let next = firstPosition(from);
      await syncToEnd();
      const end = index.decided + 1;
      while (next < end) {
        ensureOpen();
        const events = index.slice(next, end, pageSize);
        if (events.length === 0) return;
        next = (events[events.length - 1] as RecordedEvent).position + 1;
        yield* events;
      }
    },

    async readStream(stream: string) {
      ensureOpen();
      await syncToEnd();
      return index.stream(stream);
    },

    subscribe(from?: Position) {
      return subscribeFrom(from, ensureOpen, (next, subscriber) => {
        const feed: Feed = { next, done: false, running: false, again: false, subscriber };
        feeds.add(feed);
        void pump(feed);
        return () => stopFeed(feed);
      });
    },

    async head() {
      ensureOpen();
      await syncToEnd();
      return index.head;
    },

    async close() {
      if (closed) return;
      closed = true;
      for (const waiter of waiters) waiter.reject(logClosed());
      waiters.clear();
      if (watchdog !== undefined) clearInterval(watchdog);
      for (const feed of feeds) {
        feed.done = true;
        feed.subscriber.complete();
      }
      feeds.clear();
      const bounded = (task: Promise<void>) =>
        Promise.race([
          task.catch(() => undefined),
          new Promise<void>((resolve) => setTimeout(resolve, 10_000).unref()),
        ]);
      await bounded(started.then(() => undefined));
      await Promise.all([
        bounded(consumer.disconnect()),
        bounded(producer.disconnect()),
        bounded(admin.disconnect()),
      ]);
    },
  };
  return log;
};

/**
 * Opens the Kafka log of a configuration: builds the client, checks or creates the topic and
 * reads it to its end before resolving, so a broker that cannot be reached fails here.
 */
export const openKafkaEventLog = async (options: OpenKafkaEventLogOptions): Promise<EventLog> => {
  const {
    brokers: _brokers,
    clientId: _clientId,
    connectionTimeoutMs: _connectionTimeoutMs,
    requestTimeoutMs: _requestTimeoutMs,
    retries: _retries,
    ssl: _ssl,
    sasl: _sasl,
    logger: _logger,
    ...logOptions
  } = options;
  return reachedOrClosed(createKafkaEventLog({ ...logOptions, kafka: createKafkaClient(options) }));
};

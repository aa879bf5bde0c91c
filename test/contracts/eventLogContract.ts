import type { ChildProcess } from 'node:child_process';
import { createInterface } from 'node:readline';
import type { Observable } from 'rxjs';
import { firstValueFrom, takeWhile, tap, toArray } from 'rxjs';
import type { EventLog, Position, RecordedEvent, ShoalEvent } from '../../domain';
import { isShoalError } from '../../domain';
import { randomDigest, randomRepo, tagHistory, tagPushed } from '../fixtures/events';
import type { WorkerJob, WorkerMessage } from '../fixtures/eventLogWorker';
import { workerBatchIds } from '../fixtures/eventLogWorker';

/** A fresh, empty log for one test, and how to reach it again. */
export type LogUnderTest = {
  readonly log: EventLog;
  /** Where the log lives (a file path, a topic), handed to worker processes. */
  readonly location?: string;
  /** Opens another handle on the same log, as another process would; see `persistent`. */
  readonly reopen?: () => Promise<EventLog>;
  /** Removes what the log left behind, after the suite closed every handle. */
  readonly dispose?: () => Promise<void>;
};

/**
 * What an adapter can do beyond the common contract. Every difference between adapters is
 * one of these, declared by the adapter's spec; the suite never asks which adapter it runs.
 */
export type EventLogContractOptions = {
  /** Positions are exactly 1, 2, 3, …; otherwise the suite only checks they increase. */
  readonly densePositions: boolean;
  /**
   * The bound on how late a live subscriber sees an event appended through another handle
   * or process, in ms, scheduling slack on a loaded test machine included.
   */
  readonly liveDelayMs: number;
  /**
   * The log outlives its handles: `reopen` gives a second handle on the same data (the
   * factory must provide it), used for persistence and cross-handle tests.
   */
  readonly persistent?: boolean;
  /**
   * Several processes can append to and follow one log. `spawnWorker` starts a process that
   * runs `runEventLogWorker` from `test/fixtures/eventLogWorker.ts` on the log at `location`, with
   * `{ location, job }` as JSON in argv[2] (the factory must provide `location`).
   */
  readonly multiProcess?: {
    spawnWorker(location: string, job: WorkerJob): ChildProcess;
  };
  /** An acknowledged append survives kill -9 of its writer (needs `multiProcess`). */
  readonly crashSafety?: boolean;
  /**
   * A batch whose events belong to several streams is atomic and contiguous too (default
   * true). False for a log that writes one stream at a time atomically (EventStoreDB): the
   * atomicity test then uses single-stream batches, and the adapter documents what becomes
   * of a multi-stream batch.
   */
  readonly atomicMultiStreamBatches?: boolean;
};

const timeLimit = 30_000;

const within = async <T>(ms: number, what: string, promise: Promise<T>): Promise<T> => {
  let timer: NodeJS.Timeout | undefined;
  try {
    return await Promise.race([
      promise,
      new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms: ${what}`)), ms);
      }),
    ]);
  } finally {
    clearTimeout(timer);
  }
};

/** Events from a subscription up to and including the first that matches `last`. */
const collectUntil = (
  events$: Observable<RecordedEvent>,
  last: (event: RecordedEvent) => boolean,
  what = 'subscription',
): Promise<RecordedEvent[]> =>
  within(
    timeLimit / 2,
    what,
    firstValueFrom(
      events$.pipe(
        takeWhile((event) => !last(event), true),
        toArray(),
      ),
    ),
  );

const upTo = (position: Position) => (event: RecordedEvent) => event.position >= position;

const readAll = async (log: EventLog, from: Position = 1): Promise<RecordedEvent[]> => {
  const events: RecordedEvent[] = [];
  for await (const event of log.read(from)) events.push(event);
  return events;
};

const positionsOf = (events: readonly RecordedEvent[]) => events.map((e) => e.position);
const idsOf = (events: readonly { id: string }[]) => events.map((e) => e.id);
const range = (from: number, to: number) =>
  Array.from({ length: Math.max(0, to - from + 1) }, (_, i) => from + i);

const expectIncreasing = (positions: readonly number[]) => {
  for (let i = 1; i < positions.length; i++) {
    expect(positions[i]).toBeGreaterThan(positions[i - 1] as number);
  }
};

const rejection = async (promise: Promise<unknown>): Promise<unknown> => {
  try {
    await promise;
  } catch (error) {
    return error;
  }
  throw new Error('expected a rejection, got a result');
};

const expectCode = async (promise: Promise<unknown>, code: string) => {
  const error = await rejection(promise);
  expect(isShoalError(error)).toBe(true);
  expect(error).toMatchObject({ code });
  return error as Error & { code: string; detail?: Record<string, unknown>; retriable: boolean };
};

const subscriptionError = (events$: Observable<RecordedEvent>) =>
  within(
    timeLimit / 2,
    'subscription error',
    new Promise<unknown>((resolve, reject) =>
      events$.subscribe({
        next: (event) => reject(new Error(`unexpected event ${event.position}`)),
        error: resolve,
        complete: () => reject(new Error('completed without an error')),
      }),
    ),
  );

const macrotask = () => new Promise<void>((resolve) => setImmediate(resolve));

/** The lines a worker prints, as messages, as they come. */
const messagesOf = (child: ChildProcess) => {
  const messages: WorkerMessage[] = [];
  const waiters: (() => void)[] = [];
  let exited = false;
  const lines = createInterface({ input: child.stdout as NodeJS.ReadableStream });
  lines.on('line', (line) => {
    if (line.trim() === '') return;
    messages.push(JSON.parse(line) as WorkerMessage);
    waiters.splice(0).forEach((wake) => wake());
  });
  const exited$ = new Promise<number | null>((resolve) => {
    child.once('exit', (code) => {
      exited = true;
      waiters.splice(0).forEach((wake) => wake());
      resolve(code);
    });
  });
  const exit = () => within(timeLimit, 'worker exit', exited$);
  /** Resolves once `ok(messages)`; fails if the worker reports an error or exits first. */
  const until = (what: string, ok: (all: readonly WorkerMessage[]) => boolean) =>
    within(
      timeLimit,
      what,
      new Promise<void>((resolve, reject) => {
        const check = () => {
          const failed = messages.find((m) => 'error' in m);
          if (failed !== undefined) reject(new Error(`worker failed: ${JSON.stringify(failed)}`));
          else if (ok(messages)) resolve();
          else if (exited) reject(new Error(`worker exited before ${what}`));
          else waiters.push(check);
        };
        check();
      }),
    );
  const acks = () =>
    messages.filter((m): m is Extract<WorkerMessage, { ack: number }> => 'ack' in m);
  const done = () => messages.find((m): m is Extract<WorkerMessage, { done: true }> => 'done' in m);
  return { messages, until, acks, done, exit };
};

/**
 * Registers the EventLog contract (domain/log/eventLog.ts) as jest tests against one adapter.
 * `factory` makes a fresh, empty log for every test; the suite closes every handle it opened.
 */
export const describeEventLogContract = (
  name: string,
  factory: () => Promise<LogUnderTest>,
  options: EventLogContractOptions,
): void => {
  describe(`EventLog contract: ${name}`, () => {
    let opened: EventLog[] = [];
    let disposers: (() => Promise<void>)[] = [];
    let children: ChildProcess[] = [];

    const open = async (): Promise<Required<Omit<LogUnderTest, 'dispose'>>> => {
      const subject = await factory();
      opened.push(subject.log);
      if (subject.dispose !== undefined) disposers.push(subject.dispose);
      const reopen = async () => {
        if (subject.reopen === undefined) throw new Error('persistent: the factory needs reopen');
        const other = await subject.reopen();
        opened.push(other);
        return other;
      };
      return { log: subject.log, location: subject.location ?? '', reopen };
    };

    afterEach(async () => {
      for (const child of children) if (child.exitCode === null) child.kill('SIGKILL');
      children = [];
      await Promise.all(opened.map((log) => log.close()));
      opened = [];
      for (const dispose of disposers) await dispose();
      disposers = [];
    });

    /** A batch of `count` events on fresh streams. */
    const batchOf = (count: number) => Array.from({ length: count }, () => tagPushed());

    describe('append and read', () => {
      it('starts empty: head is 0 and reads find nothing', async () => {
        const { log } = await open();
        expect(await log.head()).toBe(0);
        expect(await log.readBatch(1)).toEqual([]);
        expect(await readAll(log)).toEqual([]);
      });

      it('returns the position of the last event of each batch; positions increase', async () => {
        const { log } = await open();
        const first = await log.append(batchOf(3));
        const second = await log.append(batchOf(2));
        expect(first).toBeGreaterThanOrEqual(3);
        expect(second).toBeGreaterThan(first);
        if (options.densePositions) {
          expect([first, second]).toEqual([3, 5]);
        }
        expect(await log.head()).toBe(second);
        const events = await log.readBatch(1);
        expect(events).toHaveLength(5);
        expectIncreasing(positionsOf(events));
        expect(events[2]?.position).toBe(first);
        expect(events[4]?.position).toBe(second);
      });

      it('reads back every event as written, in append order', async () => {
        const { log } = await open();
        const written = [
          tagPushed({ previous: randomDigest() }),
          tagPushed(),
          {
            ...tagPushed(),
            metadata: {
              at: '2025-01-02T03:04:05.678Z',
              actor: 'proxy-1',
              cluster: 'eu',
              correlationId: 'c-1',
              causationId: 'c-0',
            },
          },
        ];
        await log.append(written.slice(0, 1));
        await log.append(written.slice(1));
        const events = await log.readBatch(1);
        expect(events.map(({ position: _p, streamVersion: _v, ...event }) => event)).toEqual(
          written,
        );
        expect(events.map((e) => e.streamVersion)).toEqual([0, 0, 0]);
      });

      it('readBatch honours from and limit', async () => {
        const { log } = await open();
        await log.append(batchOf(10));
        const all = await log.readBatch(1);
        const third = all[2] as RecordedEvent;
        const page = await log.readBatch(third.position, { limit: 4 });
        expect(idsOf(page)).toEqual(idsOf(all.slice(2, 6)));
        expect(await log.readBatch(1, { limit: 1 })).toHaveLength(1);
        expect(await log.readBatch(0, { limit: 2 })).toEqual(all.slice(0, 2));
        expect(await log.readBatch((await log.head()) + 1)).toEqual([]);
        expect(await log.readBatch(1)).toHaveLength(10);
      });

      it('readBatch defaults to at most 1000 events', async () => {
        const { log } = await open();
        await log.append(batchOf(1001));
        expect(await log.readBatch(1)).toHaveLength(1000);
      });

      it('read pages through everything from a position and then ends', async () => {
        const { log } = await open();
        for (let i = 0; i < 5; i++) await log.append(batchOf(70));
        const all = await log.readBatch(1, { limit: 1000 });
        expect(all).toHaveLength(350);
        expect(idsOf(await readAll(log))).toEqual(idsOf(all));
        const from = (all[123] as RecordedEvent).position;
        expect(idsOf(await readAll(log, from))).toEqual(idsOf(all.slice(123)));
      });

      it('read includes what existed when it started and ends despite later appends', async () => {
        const { log } = await open();
        await log.append(batchOf(200));
        const seen: RecordedEvent[] = [];
        for await (const event of log.read(1)) {
          seen.push(event);
          if (seen.length % 50 === 0) await log.append(batchOf(5));
        }
        expect(seen.length).toBeGreaterThanOrEqual(200);
        expectIncreasing(positionsOf(seen));
      });

      it('rejects a negative or fractional position with POSITION_INVALID', async () => {
        const { log } = await open();
        await expectCode(log.readBatch(-1), 'POSITION_INVALID');
        await expectCode(log.readBatch(1.5), 'POSITION_INVALID');
        const error = await subscriptionError(log.subscribe(-3));
        expect(error).toMatchObject({ code: 'POSITION_INVALID' });
      });

      it('readStream returns one stream in stream order, versions from 0', async () => {
        const { log } = await open();
        const history = tagHistory(5);
        await log.append([history[0] as ShoalEvent, ...batchOf(2)]);
        await log.append(history.slice(1, 3));
        await log.append(batchOf(3));
        await log.append(history.slice(3));
        const stream = await log.readStream((history[0] as ShoalEvent).stream);
        expect(idsOf(stream)).toEqual(idsOf(history));
        expect(stream.map((e) => e.streamVersion)).toEqual([0, 1, 2, 3, 4]);
        expectIncreasing(positionsOf(stream));
        expect(await log.readStream('tag/nobody/here:none')).toEqual([]);
      });
    });

    describe('idempotency', () => {
      it('re-appending a known event returns its first position, writes nothing', async () => {
        const { log } = await open();
        const event = tagPushed();
        const position = await log.append([event]);
        await log.append(batchOf(2));
        const head = await log.head();
        expect(await log.append([event])).toBe(position);
        expect(await log.head()).toBe(head);
        expect(await log.readStream(event.stream)).toHaveLength(1);
      });

      it('a mixed batch writes only the new events', async () => {
        const { log } = await open();
        const known = batchOf(2);
        await log.append(known);
        const fresh = batchOf(2);
        const position = await log.append([
          known[0] as ShoalEvent,
          ...fresh,
          known[1] as ShoalEvent,
        ]);
        const all = await log.readBatch(1);
        expect(idsOf(all)).toEqual(idsOf([...known, ...fresh]));
        expect(position).toBe((all[3] as RecordedEvent).position);
      });

      it('an id repeated within one batch is written once', async () => {
        const { log } = await open();
        const event = tagPushed();
        const other = tagPushed();
        const position = await log.append([event, other, event]);
        const all = await log.readBatch(1);
        expect(idsOf(all)).toEqual([event.id, other.id]);
        expect(position).toBe((all[1] as RecordedEvent).position);
      });

      it('a retried batch succeeds even when its expectedVersion is now stale', async () => {
        const { log } = await open();
        const [first, second] = tagHistory(2);
        const position = await log.append([first as ShoalEvent], { expectedVersion: 'no-stream' });
        await log.append([second as ShoalEvent], { expectedVersion: 0 });
        expect(await log.append([first as ShoalEvent], { expectedVersion: 'no-stream' })).toBe(
          position,
        );
      });
    });

    describe('validation', () => {
      it('rejects a bad digest with EVENT_INVALID naming data.digest; writes nothing', async () => {
        const { log } = await open();
        const good = tagPushed();
        const bad = tagPushed();
        const broken = { ...bad, data: { ...bad.data, digest: 'sha256:not-hex' } };
        const error = await expectCode(log.append([good, broken]), 'EVENT_INVALID');
        expect(error.message).toContain('data.digest');
        expect(error.detail).toMatchObject({ field: 'data.digest' });
        expect(error.retriable).toBe(false);
        expect(await log.head()).toBe(0);
        expect(await log.readStream(good.stream)).toEqual([]);
      });

      it('rejects an unknown type, a wrong stream and a stray envelope field', async () => {
        const { log } = await open();
        const event = tagPushed();
        await expectCode(log.append([{ ...event, type: 'Nope' } as never]), 'EVENT_INVALID');
        const wrongStream = await expectCode(
          log.append([{ ...event, stream: 'tag/else:where' }]),
          'EVENT_INVALID',
        );
        expect(wrongStream.message).toContain('stream');
        await expectCode(log.append([{ ...event, extra: 1 } as never]), 'EVENT_INVALID');
        await expectCode(
          log.append([{ ...event, data: { ...event.data, repo: 'UPPER/case' } }]),
          'EVENT_INVALID',
        );
        expect(await log.head()).toBe(0);
      });

      it('an empty batch writes nothing and returns the head', async () => {
        const { log } = await open();
        expect(await log.append([])).toBe(0);
        const position = await log.append(batchOf(2));
        expect(await log.append([])).toBe(position);
      });
    });

    describe('expectedVersion', () => {
      it("'no-stream' writes a new stream once, then conflicts", async () => {
        const { log } = await open();
        const [first, second] = tagHistory(2);
        await log.append([first as ShoalEvent], { expectedVersion: 'no-stream' });
        const error = await expectCode(
          log.append([second as ShoalEvent], { expectedVersion: 'no-stream' }),
          'WRONG_EXPECTED_VERSION',
        );
        expect(error.retriable).toBe(false);
        expect(error.detail).toMatchObject({ expected: 'no-stream', actual: 0 });
        expect(await log.readStream((first as ShoalEvent).stream)).toHaveLength(1);
      });

      it('an exact version writes; a stale one conflicts and writes nothing', async () => {
        const { log } = await open();
        const history = tagHistory(4);
        const stream = (history[0] as ShoalEvent).stream;
        await log.append(history.slice(0, 2));
        await log.append([history[2] as ShoalEvent], { expectedVersion: 1 });
        const head = await log.head();
        const error = await expectCode(
          log.append([history[3] as ShoalEvent], { expectedVersion: 1 }),
          'WRONG_EXPECTED_VERSION',
        );
        expect(error.detail).toMatchObject({ stream, expected: 1, actual: 2 });
        await expectCode(
          log.append([tagPushed()], { expectedVersion: 0 }),
          'WRONG_EXPECTED_VERSION',
        );
        expect(await log.head()).toBe(head);
        const events = await log.readStream(stream);
        expect(events.map((e) => e.streamVersion)).toEqual([0, 1, 2]);
      });

      it('a batch of several events on one stream checks once and writes all', async () => {
        const { log } = await open();
        const history = tagHistory(5);
        await log.append(history.slice(0, 2), { expectedVersion: 'no-stream' });
        await log.append(history.slice(2), { expectedVersion: 1 });
        const events = await log.readStream((history[0] as ShoalEvent).stream);
        expect(events.map((e) => e.streamVersion)).toEqual([0, 1, 2, 3, 4]);
      });

      it('expectedVersion on a batch of several streams is EVENT_INVALID', async () => {
        const { log } = await open();
        await expectCode(log.append(batchOf(2), { expectedVersion: 'no-stream' }), 'EVENT_INVALID');
        await expectCode(log.append(batchOf(2), { expectedVersion: 0 }), 'EVENT_INVALID');
        expect(await log.append(batchOf(2), { expectedVersion: 'any' })).toBeGreaterThan(0);
      });

      it('of concurrent appends expecting the same version, exactly one wins', async () => {
        const { log, reopen } = await open();
        const other = options.persistent === true ? await reopen() : log;
        const [first, ...rest] = tagHistory(5);
        await log.append([first as ShoalEvent]);
        const results = await Promise.allSettled(
          rest.map((event, i) =>
            (i % 2 === 0 ? log : other).append([event], { expectedVersion: 0 }),
          ),
        );
        expect(results.filter((r) => r.status === 'fulfilled')).toHaveLength(1);
        for (const result of results) {
          if (result.status === 'rejected') {
            expect(result.reason).toMatchObject({ code: 'WRONG_EXPECTED_VERSION' });
          }
        }
        expect(await log.readStream((first as ShoalEvent).stream)).toHaveLength(2);
      });
    });

    describe('atomic batches', () => {
      it('writes concurrent batches whole and contiguous', async () => {
        const { log, reopen } = await open();
        const other = options.persistent === true ? await reopen() : log;
        const batches = Array.from({ length: 12 }, () =>
          options.atomicMultiStreamBatches === false ? tagHistory(10) : batchOf(10),
        );
        const results = await Promise.all(
          batches.map((batch, i) => (i % 2 === 0 ? log : other).append(batch)),
        );
        const all = await readAll(log);
        expect(all).toHaveLength(120);
        batches.forEach((batch, i) => {
          const start = all.findIndex((e) => e.id === (batch[0] as ShoalEvent).id);
          expect(idsOf(all.slice(start, start + 10))).toEqual(idsOf(batch));
          expect((all[start + 9] as RecordedEvent).position).toBe(results[i]);
          if (options.densePositions) {
            expect(positionsOf(all.slice(start, start + 10))).toEqual(
              range((results[i] as number) - 9, results[i] as number),
            );
          }
        });
      });
    });

    describe('subscribe', () => {
      it('catches up with what is there, then follows live appends', async () => {
        const { log } = await open();
        await log.append(batchOf(150));
        const existing = await readAll(log);
        const head = await log.head();
        const seen: RecordedEvent[] = [];
        let caughtUp!: () => void;
        const reachedHead = new Promise<void>((resolve) => (caughtUp = resolve));
        const done = collectUntil(
          log.subscribe(),
          (event) => {
            seen.push(event);
            if (event.position === head) caughtUp();
            return seen.length === 160;
          },
          'catch-up then live',
        );
        await within(timeLimit / 2, 'catch-up', reachedHead);
        const live = batchOf(10);
        await log.append(live.slice(0, 4));
        await log.append(live.slice(4));
        const events = await done;
        expect(idsOf(events)).toEqual(idsOf([...existing, ...live]));
        expectIncreasing(positionsOf(events));
      });

      it('starts at `from`, also at a position not written yet', async () => {
        const { log } = await open();
        await log.append(batchOf(20));
        const all = await log.readBatch(1);
        const from = (all[15] as RecordedEvent).position;
        const mid = await collectUntil(
          log.subscribe(from),
          upTo((all[19] as RecordedEvent).position),
        );
        expect(idsOf(mid)).toEqual(idsOf(all.slice(15)));

        if (options.densePositions) {
          const head = await log.head();
          const ahead = collectUntil(log.subscribe(head + 2), () => true);
          await log.append(batchOf(1));
          const second = await log.append(batchOf(1));
          expect(positionsOf(await ahead)).toEqual([second]);
        }
      });

      it('delivers an append made from inside a subscriber, as a reactor would', async () => {
        const { log } = await open();
        await log.append(batchOf(3));
        const trigger = tagPushed();
        const reaction = tagPushed();
        const seen = collectUntil(
          log.subscribe(1).pipe(
            tap((event) => {
              if (event.id === trigger.id) void log.append([reaction]);
            }),
          ),
          (event) => event.id === reaction.id,
          'the reaction',
        );
        await log.append([trigger]);
        expect(idsOf((await seen).slice(-2))).toEqual([trigger.id, reaction.id]);
      });

      it('on an empty log delivers the first append', async () => {
        const { log } = await open();
        const first = collectUntil(log.subscribe(0), () => true);
        const event = tagPushed();
        await log.append([event]);
        expect(idsOf(await first)).toEqual([event.id]);
      });

      it('hands over from catch-up to live with no gap or repeat while appending', async () => {
        const { log } = await open();
        await handOver(log, log);
      });

      it('several subscribers see the whole sequence; one leaving disturbs no other', async () => {
        const { log } = await open();
        await log.append(batchOf(30));
        const middle = await log.append(batchOf(20));
        const sentinel = tagPushed();
        const isSentinel = (e: RecordedEvent) => e.id === sentinel.id;
        const from = (await log.readBatch(1))[9]?.position as Position;
        const whole = [1, 2].map((i) => collectUntil(log.subscribe(1), isSentinel, `whole ${i}`));
        const partial = collectUntil(log.subscribe(from), isSentinel, 'from the 10th');
        const leaver = await collectUntil(log.subscribe(1), upTo(middle), 'leaver');
        await log.append(batchOf(5));
        await log.append([sentinel]);
        const all = await readAll(log);
        expect(idsOf(leaver)).toEqual(idsOf(all.slice(0, 50)));
        for (const seen of await Promise.all(whole)) expect(idsOf(seen)).toEqual(idsOf(all));
        expect(idsOf(await partial)).toEqual(idsOf(all.slice(9)));
      });
    });

    describe('close', () => {
      it('ends live subscriptions and fails later calls with LOG_CLOSED', async () => {
        const { log } = await open();
        await log.append(batchOf(3));
        const ended = within(
          timeLimit / 2,
          'completion',
          new Promise<number>((resolve, reject) => {
            let count = 0;
            log.subscribe(1).subscribe({
              next: () => {
                count += 1;
                if (count === 3) void log.close();
              },
              error: reject,
              complete: () => resolve(count),
            });
          }),
        );
        expect(await ended).toBe(3);
        await expectCode(log.append(batchOf(1)), 'LOG_CLOSED');
        await expectCode(log.readBatch(1), 'LOG_CLOSED');
        await expectCode(log.readStream('tag/a:b'), 'LOG_CLOSED');
        await expectCode(log.head(), 'LOG_CLOSED');
        await expectCode(readAll(log), 'LOG_CLOSED');
        expect(await subscriptionError(log.subscribe(1))).toMatchObject({ code: 'LOG_CLOSED' });
        await log.close();
      });
    });

    /**
     * Appends in a loop through `writer` while a subscriber on `reader` joins mid-way: it must
     * see every event from the start exactly once, in order. A sentinel appended after the
     * loop proves nothing more arrives in between.
     */
    const handOver = async (writer: EventLog, reader: EventLog) => {
      const batches = 120;
      let subscription: Promise<RecordedEvent[]> | undefined;
      const sentinel = tagPushed({ repo: randomRepo('sentinel/r') });
      for (let k = 0; k < batches; k++) {
        await writer.append(batchOf(1 + (k % 4)));
        if (k === 40) {
          subscription = collectUntil(
            reader.subscribe(1),
            (e) => e.id === sentinel.id,
            'hand-over',
          );
        }
        if (k % 3 === 0) await macrotask();
      }
      const head = await writer.append([sentinel]);
      const seen = await (subscription as Promise<RecordedEvent[]>);
      const all = await readAll(writer);
      expect(idsOf(seen)).toEqual(idsOf(all));
      expect(new Set(idsOf(seen)).size).toBe(seen.length);
      if (options.densePositions) expect(positionsOf(seen)).toEqual(range(1, head));
      else expectIncreasing(positionsOf(seen));
    };

    if (options.persistent === true) {
      describe('persistence and other handles', () => {
        it('keeps every event across close and reopen', async () => {
          const { log, reopen } = await open();
          const history = tagHistory(3);
          await log.append(batchOf(10));
          await log.append(history);
          const before = await readAll(log);
          await log.close();
          const again = await reopen();
          expect(await readAll(again)).toEqual(before);
          expect(idsOf(await again.readStream((history[0] as ShoalEvent).stream))).toEqual(
            idsOf(history),
          );
          const { position, streamVersion: _, ...first } = before[0] as RecordedEvent;
          expect(await again.append([first as ShoalEvent])).toBe(position);
          await expect(
            again.append([tagPushed({ repo: history[0]?.data.repo, tag: history[0]?.data.tag })], {
              expectedVersion: 2,
            }),
          ).resolves.toBeGreaterThan(before[before.length - 1]?.position as number);
        });

        it('stream versions and compare-and-swap see appends through another handle', async () => {
          const { log, reopen } = await open();
          const other = await reopen();
          const [a, b, c, d] = tagHistory(4);
          await log.append([a as ShoalEvent]);
          await other.append([b as ShoalEvent], { expectedVersion: 0 });
          await expectCode(
            log.append([c as ShoalEvent], { expectedVersion: 0 }),
            'WRONG_EXPECTED_VERSION',
          );
          await log.append([c as ShoalEvent]);
          await other.append([d as ShoalEvent], { expectedVersion: 2 });
          const stream = await log.readStream((a as ShoalEvent).stream);
          expect(idsOf(stream)).toEqual(idsOf([a, b, c, d] as ShoalEvent[]));
          expect(stream.map((e) => e.streamVersion)).toEqual([0, 1, 2, 3]);
        });

        it('a subscriber sees appends made through another handle within liveDelayMs', async () => {
          const { log, reopen } = await open();
          const other = await reopen();
          const arrivals = new Map<string, number>();
          const last = tagPushed();
          const done = collectUntil(log.subscribe(1), (e) => {
            arrivals.set(e.id, Date.now());
            return e.id === last.id;
          });
          const sent = new Map<string, number>();
          for (let i = 0; i < 20; i++) {
            const batch = i === 19 ? [last] : batchOf(2);
            await other.append(batch);
            const now = Date.now();
            batch.forEach((e) => sent.set(e.id, now));
            await macrotask();
          }
          const seen = await done;
          expect(idsOf(seen)).toEqual(idsOf(await readAll(other)));
          for (const [id, at] of sent) {
            expect((arrivals.get(id) as number) - at).toBeLessThan(options.liveDelayMs);
          }
        });

        it('hands over from catch-up to live while another handle appends', async () => {
          const { log, reopen } = await open();
          await handOver(await reopen(), log);
        });
      });
    }

    const multiProcess = options.multiProcess;
    if (multiProcess !== undefined) {
      const spawn = (location: string, job: WorkerJob) => {
        const child = multiProcess.spawnWorker(location, job);
        children.push(child);
        return { child, ...messagesOf(child) };
      };

      describe('several processes', () => {
        it(
          'two writer processes append concurrently: every event, one total order, ' +
            'seen live by a subscriber here',
          async () => {
            const { log, location } = await open();
            const batches = 60;
            const batchSize = 5;
            const total = 2 * batches * batchSize;
            const arrivals = new Map<Position, number>();
            const live = collectUntil(
              log.subscribe(1),
              (e) => {
                arrivals.set(e.position, Date.now());
                return arrivals.size === total;
              },
              'live events from the workers',
            );
            const writers = ['a-', 'b-'].map((idPrefix) =>
              spawn(location, { mode: 'write', idPrefix, batches, batchSize, waitForGo: true }),
            );
            await Promise.all(writers.map((w) => w.until('ready', (m) => m.length > 0)));
            writers.forEach((w) => w.child.stdin?.end('go\n'));
            await Promise.all(writers.map((w) => w.until('done', () => w.done() !== undefined)));
            expect(await Promise.all(writers.map((w) => w.exit()))).toEqual([0, 0]);

            const all = await readAll(log);
            expect(all).toHaveLength(total);
            expectIncreasing(positionsOf(all));
            if (options.densePositions) expect(positionsOf(all)).toEqual(range(1, total));
            // Every event reaches the subscriber here (within the live delay, checked below).
            const seenLive = await live;
            const position = new Map(all.map((e) => [e.id, e.position]));
            for (const [w, idPrefix] of [
              [writers[0], 'a-'],
              [writers[1], 'b-'],
            ] as const) {
              const acks = w?.acks() ?? [];
              expect(acks).toHaveLength(batches);
              for (const ack of acks) {
                const ids = workerBatchIds(idPrefix, ack.batch, batchSize);
                const positions = ids.map((id) => position.get(id) as Position);
                expect(positions[batchSize - 1]).toBe(ack.ack);
                if (options.densePositions) {
                  expect(positions).toEqual(range(ack.ack - batchSize + 1, ack.ack));
                }
                // Bounded live delay: from the worker's acknowledgement to arrival here.
                expect((arrivals.get(ack.ack) as number) - ack.at).toBeLessThan(
                  options.liveDelayMs,
                );
              }
            }
            expect(seenLive.map((e) => [e.position, e.id])).toEqual(
              all.map((e) => [e.position, e.id]),
            );
            const reader = spawn(location, { mode: 'read' });
            await reader.until('read', () => reader.done() !== undefined);
            expect(reader.done()?.events).toEqual(all.map((e) => [e.position, e.id]));
          },
          timeLimit * 2,
        );

        it(
          'a subscriber joining mid-way sees a worker’s appends with no gap or repeat',
          async () => {
            const { log, location } = await open();
            const batches = 80;
            const batchSize = 3;
            const writer = spawn(location, { mode: 'write', idPrefix: 'w-', batches, batchSize });
            await writer.until('some appends', () => writer.acks().length >= 20);
            const seen = await collectUntil(
              log.subscribe(1),
              (e) => e.id === `w-b${batches - 1}-${batchSize - 1}`,
              'hand-over across processes',
            );
            expect(await writer.exit()).toBe(0);
            const all = await readAll(log);
            expect(all).toHaveLength(batches * batchSize);
            expect(idsOf(seen)).toEqual(idsOf(all));
          },
          timeLimit * 2,
        );
      });

      if (options.crashSafety === true) {
        describe('crash safety', () => {
          it(
            'every acknowledged append survives kill -9 of its writer; no batch is torn',
            async () => {
              const { location, reopen } = await open();
              const batchSize = 5;
              const writer = spawn(location, {
                mode: 'write',
                idPrefix: 'k-',
                batches: 1_000_000,
                batchSize,
              });
              await writer.until('a burst of appends', () => writer.acks().length >= 60);
              writer.child.kill('SIGKILL');
              expect(await writer.exit()).toBeNull();
              const acks = writer.acks();

              const log = await reopen();
              const all = await readAll(log);
              expectIncreasing(positionsOf(all));
              const byBatch = new Map<number, RecordedEvent[]>();
              for (const event of all) {
                const match = /^k-b(\d+)-(\d+)$/.exec(event.id);
                expect(match).not.toBeNull();
                const batch = Number(match?.[1]);
                byBatch.set(batch, [...(byBatch.get(batch) ?? []), event]);
              }
              // Batches are written one after another: those present are 0..n-1, whole.
              const present = [...byBatch.keys()].sort((a, b) => a - b);
              expect(present).toEqual(range(0, present.length - 1));
              for (const [batch, events] of byBatch) {
                expect(idsOf(events)).toEqual(workerBatchIds('k-', batch, batchSize));
              }
              // Every acknowledged batch is there, at the position it was acknowledged with.
              expect(present.length).toBeGreaterThanOrEqual(acks.length);
              for (const ack of acks) {
                const events = byBatch.get(ack.batch) ?? [];
                expect(events[batchSize - 1]?.position).toBe(ack.ack);
              }
              // And the log still takes appends.
              const next = await log.append(batchOf(2));
              expect(next).toBeGreaterThan(all[all.length - 1]?.position ?? 0);
            },
            timeLimit * 2,
          );
        });
      }
    }
  });
};

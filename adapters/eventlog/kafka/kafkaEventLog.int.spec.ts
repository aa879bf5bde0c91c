import { spawn, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import type { Kafka } from 'kafkajs';
import { Kafka as KafkaClient, logLevel } from 'kafkajs';
import type { EventLog, RecordedEvent } from '../../../domain';
import { isShoalError } from '../../../domain';
import { describeEventLogContract } from '../../../test/contracts/eventLogContract';
import { spawnEventLogWorker } from '../../../test/fixtures/eventLogWorker';
import { tagHistory, tagPushed } from '../../../test/fixtures/events';
import { createKafkaEventLog } from './kafkaEventLog';

// The EventLog contract against a real broker. CI starts one (`test/services/kafka.sh start`)
// and exports KAFKA_BROKERS; without it this spec fails on purpose, it never skips.
const brokers = process.env.KAFKA_BROKERS?.split(',').filter(Boolean) ?? [];
if (brokers.length === 0) {
  throw new Error(
    'KAFKA_BROKERS is not set: start a broker with `eval "$(test/services/kafka.sh start)"` ' +
      '(it prints KAFKA_BROKERS=127.0.0.1:<port>) and run again, or use `npm run test:kafka`',
  );
}

const root = join(__dirname, '../../..');

const client = (retries = 5): Kafka =>
  new KafkaClient({
    brokers,
    clientId: 'shoal-test',
    logLevel: logLevel.NOTHING,
    retry: { retries },
  });

const freshTopic = () => `shoal-test-${randomBytes(6).toString('hex')}`;

/** Deletes a test's topic once every handle on it is closed. */
const deleteTopic = async (topic: string) => {
  // No retries: deleting a topic that was never created fails at once instead of backing off.
  const admin = client(0).admin();
  await admin.connect();
  try {
    await admin.deleteTopics({ topics: [topic] });
  } catch {
    // Left behind on a broken broker: harmless, topics are random.
  } finally {
    await admin.disconnect();
  }
};

const open = (topic: string, options: { pageSize?: number } = {}): EventLog =>
  createKafkaEventLog({ kafka: client(), topic, replicationFactor: 1, ...options });

describeEventLogContract(
  'kafka',
  async () => {
    const topic = freshTopic();
    // Small pages so catch-up and read cross many page boundaries.
    const log = open(topic, { pageSize: 64 });
    // The topic exists once the first handle has started: workers open it with createTopic off.
    await log.head();
    return {
      log,
      location: `${brokers.join(',')}/${topic}`,
      reopen: async () => open(topic, { pageSize: 64 }),
      dispose: () => deleteTopic(topic),
    };
  },
  {
    // Void records (duplicate ids, lost compare-and-swaps) keep their offsets: gaps.
    densePositions: false,
    // A fetch long-polls and returns as soon as a record is committed; the rest is slack.
    liveDelayMs: 2000,
    persistent: true,
    multiProcess: {
      spawnWorker: (location, job) => spawnEventLogWorker('kafka', location, job),
    },
    crashSafety: true,
  },
);

describe('kafka EventLog topic and records', () => {
  let logs: EventLog[] = [];
  let topics: string[] = [];
  afterEach(async () => {
    await Promise.all(logs.map((log) => log.close()));
    logs = [];
    for (const topic of new Set(topics)) await deleteTopic(topic);
    topics = [];
  });
  const track = (log: EventLog, topic: string) => {
    logs.push(log);
    topics.push(topic);
    return log;
  };

  it('creates a one-partition topic with infinite retention', async () => {
    const topic = freshTopic();
    const log = track(open(topic), topic);
    await log.head();
    const admin = client().admin();
    await admin.connect();
    try {
      const metadata = await admin.fetchTopicMetadata({ topics: [topic] });
      expect(metadata.topics[0]?.partitions).toHaveLength(1);
      const { ConfigResourceTypes } = await import('kafkajs');
      const described = await admin.describeConfigs({
        includeSynonyms: false,
        resources: [{ type: ConfigResourceTypes.TOPIC, name: topic }],
      });
      const config = new Map(
        (described.resources[0]?.configEntries ?? []).map((e) => [e.configName, e.configValue]),
      );
      expect(config.get('retention.ms')).toBe('-1');
      expect(config.get('retention.bytes')).toBe('-1');
      expect(config.get('cleanup.policy')).toBe('delete');
      expect(config.get('min.insync.replicas')).toBe('1');
    } finally {
      await admin.disconnect();
    }
  });

  it('refuses a topic with several partitions, or with finite retention', async () => {
    const admin = client().admin();
    await admin.connect();
    const wide = freshTopic();
    const short = freshTopic();
    topics.push(wide, short);
    try {
      await admin.createTopics({
        waitForLeaders: true,
        topics: [
          { topic: wide, numPartitions: 3, replicationFactor: 1 },
          {
            topic: short,
            numPartitions: 1,
            replicationFactor: 1,
            configEntries: [{ name: 'retention.ms', value: '86400000' }],
          },
        ],
      });
    } finally {
      await admin.disconnect();
    }
    const wideLog = track(open(wide), wide);
    const error = await wideLog.head().catch((e: unknown) => e);
    expect(isShoalError(error, 'CONFIG_INVALID')).toBe(true);
    expect((error as Error).message).toMatch(/has 3 partitions: Shoal needs exactly one/);
    const shortLog = track(open(short), short);
    const other = await shortLog.append([tagPushed()]).catch((e: unknown) => e);
    expect(isShoalError(other, 'CONFIG_INVALID')).toBe(true);
    expect((other as Error).message).toMatch(/retention\.ms=86400000/);
  });

  it('a missing topic with createTopic off fails clearly', async () => {
    const topic = freshTopic();
    const log = createKafkaEventLog({ kafka: client(), topic, createTopic: false });
    logs.push(log);
    const error = await log.head().catch((e: unknown) => e);
    expect(isShoalError(error, 'CONFIG_INVALID')).toBe(true);
    expect((error as Error).message).toMatch(/does not exist/);
  });

  it('keeps losing and duplicate batches on the topic as void records, skipped alike', async () => {
    const topic = freshTopic();
    const one = track(open(topic), topic);
    const two = open(topic);
    logs.push(two);
    await Promise.all([one.head(), two.head()]);
    // Both handles pass their fast path before either batch is on the topic, so both
    // batches are produced and the log's rule decides.
    const [a, b, c] = tagHistory(3);
    const race = await Promise.allSettled([
      one.append([a as never], { expectedVersion: 'no-stream' }),
      two.append([b as never], { expectedVersion: 'no-stream' }),
    ]);
    const won = race.findIndex((r) => r.status === 'fulfilled');
    expect(race.filter((r) => r.status === 'rejected')).toEqual([
      { status: 'rejected', reason: expect.objectContaining({ code: 'WRONG_EXPECTED_VERSION' }) },
    ]);
    const winner = won === 0 ? (a as never as { id: string }) : (b as never as { id: string });
    const p1 = (race[won] as PromiseFulfilledResult<number>).value;
    const p2 = await one.append([c as never], { expectedVersion: 0 });
    const d = tagPushed();
    const [p3, p3again] = await Promise.all([one.append([d]), two.append([d])]);
    expect(p3again).toBe(p3);

    const admin = client().admin();
    await admin.connect();
    const offsets = await admin.fetchTopicOffsets(topic);
    await admin.disconnect();
    // Five records on the topic (a, b, c, d, d), three visible events.
    expect(offsets[0]?.high).toBe('5');
    const third = track(open(topic), topic);
    for (const log of [one, two, third]) {
      const events = await log.readBatch(1);
      expect(events.map((e) => [e.id, e.position, e.streamVersion])).toEqual([
        [winner.id, p1, 0],
        [c?.id, p2, 1],
        [d.id, p3, 0],
      ]);
      expect(await log.head()).toBe(p3);
    }
  });
});

// Restarting the broker disturbs every client of it, so this runs only on the broker that
// test/services/kafka.sh manages (its default port), where the restart is ours to make.
const script = join(root, 'test/services/kafka.sh');
const ownBroker = ((): boolean => {
  const status = spawnSync('bash', [script, 'status'], { encoding: 'utf8', timeout: 30_000 });
  const managed = /^KAFKA_BROKERS=(\S+)$/m.exec(status.stdout ?? '')?.[1];
  return status.status === 0 && managed === brokers.join(',');
})();

(ownBroker ? describe : describe.skip)(
  `kafka EventLog across a broker restart${ownBroker ? '' : ' (NOT RUN: not kafka.sh’s broker)'}`,
  () => {
    it('keeps every acknowledged append; failed ones are whole or absent; followers resume', async () => {
      const topic = freshTopic();
      const log = open(topic);
      const follower = open(topic);
      try {
        await Promise.all([log.head(), follower.head()]);
        const followed: RecordedEvent[] = [];
        const subscription = follower.subscribe(1).subscribe((e) => void followed.push(e));
        const acked: { ids: string[]; position: number }[] = [];
        const failed: { ids: string[]; code: string | undefined }[] = [];
        let restarted: Promise<number | null> | undefined;
        let restartDone = false;
        const deadline = Date.now() + 90_000;
        // Append until the broker has been restarted and 20 more appends were acknowledged.
        let after = 0;
        while (after < 20 && Date.now() < deadline) {
          const batch = [tagPushed(), tagPushed(), tagPushed()];
          try {
            const position = await log.append(batch);
            acked.push({ ids: batch.map((e) => e.id), position });
            if (restartDone) after += 1;
          } catch (error) {
            expect(error).toMatchObject({ code: 'LOG_UNAVAILABLE', retriable: true });
            failed.push({ ids: batch.map((e) => e.id), code: (error as { code?: string }).code });
            await new Promise((resolve) => setTimeout(resolve, 200));
          }
          if (acked.length === 20 && restarted === undefined) {
            restarted = new Promise((resolve) => {
              const child = spawn('bash', [script, 'restart'], { stdio: 'ignore' });
              child.once('exit', (code) => {
                restartDone = true;
                resolve(code);
              });
            });
          }
        }
        expect(await restarted).toBe(0);
        expect(after).toBe(20);

        const fresh = open(topic);
        try {
          const all: RecordedEvent[] = [];
          for await (const event of fresh.read(1)) all.push(event);
          const position = new Map(all.map((e) => [e.id, e.position]));
          for (const { ids, position: last } of acked) {
            expect(ids.map((id) => position.has(id))).toEqual([true, true, true]);
            expect(position.get(ids[2] as string)).toBe(last);
          }
          for (const { ids } of failed) {
            const present = ids.filter((id) => position.has(id)).length;
            expect([0, 3]).toContain(present);
          }
          // The follower's consumer went through the restart and resumed where it was.
          const end = all[all.length - 1]?.position as number;
          await new Promise<void>((resolve, reject) => {
            const started = Date.now();
            const check = () => {
              if ((followed[followed.length - 1]?.position ?? 0) >= end) resolve();
              else if (Date.now() - started > 30_000) reject(new Error('follower is behind'));
              else setTimeout(check, 100);
            };
            check();
          });
          expect(followed.map((e) => e.id)).toEqual(all.map((e) => e.id));
          subscription.unsubscribe();
        } finally {
          await fresh.close();
        }
      } finally {
        await Promise.all([log.close(), follower.close()]);
        await deleteTopic(topic);
      }
    }, 180_000);
  },
);

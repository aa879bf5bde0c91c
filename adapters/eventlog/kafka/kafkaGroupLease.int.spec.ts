import { spawn } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { Kafka, logLevel } from 'kafkajs';
import type { Lease } from '../../../domain';
import { createKafkaGroupLease } from './kafkaGroupLease';

// The replicator's lease across hosts: membership of a Kafka consumer group, against the
// broker `npm test` starts (test/services/kafka.sh). Without KAFKA_BROKERS this spec fails on
// purpose, it never skips.
const brokers = process.env.KAFKA_BROKERS?.split(',').filter(Boolean) ?? [];
if (brokers.length === 0) {
  throw new Error(
    'KAFKA_BROKERS is not set: start a broker with `eval "$(test/services/kafka.sh start)"` ' +
      '(it prints KAFKA_BROKERS=127.0.0.1:<port>) and run again, or use `npm run test:kafka`',
  );
}

// The broker's smallest session timeout (group.min.session.timeout.ms).
const sessionTimeoutMs = 6000;
const fixtures = join(__dirname, '../../../test/fixtures');
const ignore = () => undefined;
const logger = { error: ignore, warn: ignore, info: ignore, debug: ignore };

/** Polls `check` every 100 ms until it is true, failing after `ms`. */
const eventually = async (what: string, check: () => Promise<boolean>, ms: number) => {
  const deadline = Date.now() + ms;
  while (Date.now() < deadline) {
    if (await check()) return Date.now();
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  throw new Error(`not within ${ms} ms: ${what}`);
};

/** Which of the leases hold now (trying each, as a standing-by replicator does). */
const holders = async (leases: readonly Lease[]) => {
  const held = await Promise.all(leases.map((lease) => lease.tryAcquire()));
  return leases.filter((_, i) => held[i]);
};

describe('kafka group lease', () => {
  const kafka = new Kafka({ brokers, logLevel: logLevel.NOTHING });
  const admin = kafka.admin();
  const topic = `shoal-lease-${randomBytes(4).toString('hex')}`;
  const leases: Lease[] = [];
  const children: ChildProcess[] = [];
  const lease = (groupId: string) => {
    const made = createKafkaGroupLease({ brokers, topic, groupId, sessionTimeoutMs, logger });
    leases.push(made);
    return made;
  };

  beforeAll(async () => {
    await admin.connect();
    await admin.createTopics({
      waitForLeaders: true,
      topics: [{ topic, numPartitions: 1, replicationFactor: 1 }],
    });
  });
  afterEach(async () => {
    for (const child of children.splice(0)) child.kill('SIGKILL');
    await Promise.all(leases.splice(0).map((l) => l.release().catch(() => undefined)));
  });
  afterAll(async () => {
    await admin.deleteTopics({ topics: [topic] }).catch(() => undefined);
    await admin.disconnect();
  });

  it('is held by one member at a time, and stays with it when others join', async () => {
    const group = `g-${randomBytes(3).toString('hex')}`;
    const first = lease(group);
    await eventually('the first contender holds it', () => first.tryAcquire(), 20_000);
    const others = [lease(group), lease(group)];
    // The others join (a rebalance), and the lease stays where it was.
    await eventually(
      'every member has joined',
      async () => {
        await holders(others);
        const { groups } = await admin.describeGroups([group]);
        return groups[0]?.members.length === 3 && groups[0]?.state === 'Stable';
      },
      20_000,
    );
    await eventually('the holder holds it again after the rebalance', () => first.renew(), 10_000);
    for (let i = 0; i < 5; i++) {
      expect(await holders([first, ...others])).toEqual([first]);
      await new Promise((resolve) => setTimeout(resolve, 300));
    }
    expect(await others[0]?.holder()).toMatchObject({ pid: process.pid });
  }, 60_000);

  it('passes at once to another member when its holder releases it', async () => {
    const group = `g-${randomBytes(3).toString('hex')}`;
    const first = lease(group);
    const second = lease(group);
    await eventually(
      'someone holds it',
      async () => (await holders([first, second])).length === 1,
      20_000,
    );
    const [holder] = await holders([first, second]);
    const other = holder === first ? second : first;
    const released = Date.now();
    await holder?.release();
    const taken = await eventually('the other holds it', () => other.tryAcquire(), 15_000);
    // A member that leaves the group hands over without waiting for its session to end.
    expect(taken - released).toBeLessThan(sessionTimeoutMs);
  }, 60_000);

  it('is taken over from a member killed with SIGKILL within its session timeout', async () => {
    const group = `g-${randomBytes(3).toString('hex')}`;
    const child = spawn(
      process.execPath,
      [
        '-r',
        join(fixtures, 'register.js'),
        join(fixtures, 'kafkaLeaseHolder.ts'),
        brokers.join(','),
        topic,
        group,
        String(sessionTimeoutMs),
      ],
      { stdio: ['ignore', 'pipe', 'inherit'] },
    );
    children.push(child);
    await new Promise<void>((resolve, reject) => {
      child.stdout?.on('data', (d: Buffer) => d.toString().includes('held') && resolve());
      child.once('exit', () => reject(new Error('the holder process exited')));
    });
    const survivor = lease(group);
    await eventually(
      'the survivor has joined',
      async () => {
        expect(await survivor.tryAcquire()).toBe(false);
        const { groups } = await admin.describeGroups([group]);
        return groups[0]?.members.length === 2 && groups[0]?.state === 'Stable';
      },
      20_000,
    );
    expect((await survivor.holder())?.pid).toBe(child.pid);
    const killed = Date.now();
    child.kill('SIGKILL');
    const taken = await eventually('the survivor holds it', () => survivor.tryAcquire(), 30_000);
    // The coordinator drops the dead member after its session timeout, then the survivor
    // rejoins and is assigned the partition.
    expect(taken - killed).toBeLessThan(sessionTimeoutMs + 5000);
    expect((await survivor.holder())?.pid).toBe(process.pid);
  }, 60_000);
});

import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Kafka, logLevel } from 'kafkajs';
import type { EventLog } from '../../../domain';
import { isShoalError } from '../../../domain';
import { tagPushed } from '../../../test/fixtures/events';
import type { KafkaNode } from '../../../test/fixtures/kafkaNodes';
import { kafkaNodes } from '../../../test/fixtures/kafkaNodes';
import { openKafkaEventLog } from './kafkaEventLog';

// The log on a three-node Kafka cluster (KRaft, every node broker and controller, started by
// test/services/kafka.sh with a run directory and ports of its own): the topic has three
// replicas and needs two in sync, so with one node killed (kill -9 of the partition's leader)
// appends and reads go on once the cluster has fenced it and elected another leader.

const script = join(__dirname, '../../../test/services/kafka.sh');
const quiet = {
  error: () => undefined,
  warn: () => undefined,
  info: () => undefined,
  debug: () => undefined,
};

const run = (args: string[], env: NodeJS.ProcessEnv) =>
  new Promise<string>((resolve, reject) => {
    const child = spawn('bash', [script, ...args], {
      env: { ...process.env, ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let out = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    child.stderr.on('data', (d: Buffer) => (out += d.toString()));
    child.once('exit', (code) =>
      code === 0 ? resolve(out) : reject(new Error(`kafka.sh ${args.join(' ')}: ${out}`)),
    );
  });

describe('kafka log on three nodes', () => {
  let root: string;
  const nodes: KafkaNode[] = [];
  let log: EventLog | undefined;

  beforeAll(async () => {
    root = mkdtempSync(join(tmpdir(), 'shoal-kafka3-'));
    nodes.push(...(await kafkaNodes(root)));
    // Together: a node answers only once a quorum of controllers is up.
    await Promise.all(nodes.map((node) => run(['start'], node.env)));
  }, 240_000);

  afterAll(async () => {
    await log?.close().catch(() => undefined);
    await Promise.all(nodes.map((node) => run(['stop'], node.env).catch(() => undefined)));
    rmSync(root, { recursive: true, force: true });
  }, 120_000);

  it('goes on appending and reading with the leader killed (rf 3, min.insync 2)', async () => {
    const brokers = nodes.map((n) => `127.0.0.1:${n.port}`);
    const topic = `shoal-log-${randomBytes(4).toString('hex')}`;
    log = await openKafkaEventLog({ brokers, topic, replicationFactor: 3, logger: quiet });
    const before = await log.append([tagPushed(), tagPushed()]);

    const kafka = new Kafka({ brokers, logLevel: logLevel.NOTHING });
    const admin = kafka.admin();
    await admin.connect();
    const metadata = await admin.fetchTopicMetadata({ topics: [topic] });
    const partition = metadata.topics[0]?.partitions[0];
    await admin.disconnect();
    expect(partition?.replicas).toHaveLength(3);
    expect(partition?.isr).toHaveLength(3);
    const leader = nodes.find((n) => n.id === partition?.leader) as KafkaNode;
    const pid = Number(
      (await run(['status'], leader.env).catch((e: Error) => e.message)).match(/pid (\d+)/)?.[1],
    );
    expect(pid).toBeGreaterThan(0);

    const killed = Date.now();
    process.kill(pid, 'SIGKILL');
    // Append until one is acknowledged (each failure is a clean, retriable LOG_UNAVAILABLE).
    let after = 0;
    while (after === 0) {
      try {
        after = await log.append([tagPushed()]);
      } catch (error) {
        expect(isShoalError(error, 'LOG_UNAVAILABLE')).toBe(true);
        if (Date.now() - killed > 60_000) throw error;
      }
    }
    const resumed = Date.now() - killed;
    process.stdout.write(`kafka3: appends resumed ${resumed} ms after kill -9 of the leader\n`);
    expect(after).toBeGreaterThan(before);
    // Everything acknowledged is read back, the old and the new, in order.
    const events = [];
    for await (const event of log.read(1)) events.push(event);
    expect(events.map((e) => e.position)).toEqual(
      [...events.map((e) => e.position)].sort((a, b) => a - b),
    );
    expect(events.some((e) => e.position === before)).toBe(true);
    expect(events.some((e) => e.position === after)).toBe(true);
    // Two of three in sync are enough: it went on without the third.
    expect(resumed).toBeLessThan(30_000);
  }, 180_000);
});

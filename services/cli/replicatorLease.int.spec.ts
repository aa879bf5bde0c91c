import { randomBytes } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { hostname } from 'node:os';
import { join } from 'node:path';
import { shoalAsync, tempDir } from '../../test/fixtures/cli';
import { openKafkaEventLog } from '../../adapters/eventlog';
import { validateConfig } from '../shared/config';
import { openDataDir } from '../shared/dataDir';
import { silentLogger } from '../shared/logger';
import { LogConfigSchema } from '../shared/logConfig';
import { replicatorLeaseFor, replicatorLeaseHolder } from './compose';

// `shoal replication status` on a Kafka log reads who runs the replicator from the lease's
// consumer group (replicators run on any host), not from a lock file that only one host has.
// Against the broker `npm test` starts; without KAFKA_BROKERS this spec fails, never skips.
const brokers = process.env.KAFKA_BROKERS?.split(',').filter(Boolean) ?? [];
if (brokers.length === 0) {
  throw new Error(
    'KAFKA_BROKERS is not set: start a broker with `eval "$(test/services/kafka.sh start)"` ' +
      'and run again, or run `npm test`',
  );
}

describe('the replicator lease on a Kafka log, seen from the CLI', () => {
  const dir = tempDir('shoal-replicator-lease-');
  const cluster = `c-${randomBytes(3).toString('hex')}`;
  const topic = `shoal-lease-cli-${randomBytes(3).toString('hex')}`;
  const log = validateConfig(LogConfigSchema, {
    adapter: 'kafka',
    kafka: { brokers, topic, replicationFactor: 1 },
  });
  afterAll(() => dir.cleanup());

  it('names the holder on another "host" (this process), and none once it let go', async () => {
    // The log's topic exists before any replicator runs (the services create it).
    await (
      await openKafkaEventLog({ brokers, topic, replicationFactor: 1, logger: silentLogger() })
    ).close();
    const lease = replicatorLeaseFor(log, { cluster, leaseMs: 6000 });
    if (lease === undefined) throw new Error('no lease for a Kafka log');
    const deadline = Date.now() + 30_000;
    while (!(await lease.tryAcquire())) {
      if (Date.now() > deadline) throw new Error('the lease was never acquired');
      await new Promise((resolve) => setTimeout(resolve, 200));
    }
    expect(await replicatorLeaseHolder(log, cluster)).toMatchObject({
      pid: process.pid,
      host: hostname(),
    });

    // The CLI on a data directory of its own (nothing beside it) says a replicator runs.
    openDataDir(join(dir.path, 'data'), { create: true });
    const config = join(dir.path, 'status.yaml');
    writeFileSync(
      config,
      `cluster: ${cluster}\ndataDir: ${JSON.stringify(join(dir.path, 'data'))}\n` +
        `log:\n  adapter: kafka\n  kafka:\n    brokers: [${brokers.join(', ')}]\n` +
        `    topic: ${topic}\n    replicationFactor: 1\n`,
    );
    const status = await shoalAsync(['replication', 'status', '--config', config, '--json']);
    expect(JSON.parse(status.stdout)).toMatchObject({ replicator: 'elsewhere' });
    const text = await shoalAsync(['replication', 'status', '--config', config]);
    expect(text.stdout).toContain(`a replicator runs (pid ${process.pid} on ${hostname()})`);

    // Let go (leaving the group): nobody holds it, at once or after the group settles.
    await lease.release();
    const gone = Date.now() + 15_000;
    while ((await replicatorLeaseHolder(log, cluster)) !== undefined) {
      if (Date.now() > gone) throw new Error('the lease still has a holder after release');
      await new Promise((resolve) => setTimeout(resolve, 200));
    }
  }, 90_000);
});

import { createServer } from 'node:net';
import { Kafka, logLevel } from 'kafkajs';
import { isShoalError } from '../../../domain';
import { tagPushed } from '../../../test/fixtures/events';
import { createKafkaEventLog, openKafkaEventLog } from './kafkaEventLog';

// A broker that cannot be reached, without a broker: a loopback port nobody listens on.
const closedPort = () =>
  new Promise<number>((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      server.close(() => resolve(typeof address === 'object' && address ? address.port : 0));
    });
  });

describe('kafka EventLog without a broker', () => {
  it('fails calls and subscriptions with a retriable LOG_UNAVAILABLE', async () => {
    const port = await closedPort();
    const kafka = new Kafka({
      brokers: [`127.0.0.1:${port}`],
      connectionTimeout: 300,
      retry: { retries: 1, initialRetryTime: 50, maxRetryTime: 200 },
      logLevel: logLevel.NOTHING,
    });
    const log = createKafkaEventLog({ kafka, topic: 'shoal-unreachable', replicationFactor: 1 });
    try {
      const error = await log.append([tagPushed()]).catch((e: unknown) => e);
      expect(isShoalError(error, 'LOG_UNAVAILABLE')).toBe(true);
      expect(error).toMatchObject({ retriable: true });
      expect((error as Error).message).toMatch(/^kafka log: opening topic "shoal-unreachable": /);
      expect((error as Error).message).toMatch(/ECONNREFUSED|Connection/);
      const subscribed = await new Promise<unknown>((resolve) =>
        log.subscribe(1).subscribe({ error: resolve, complete: () => resolve('completed') }),
      );
      expect(subscribed).toMatchObject({ code: 'LOG_UNAVAILABLE', retriable: true });
    } finally {
      await log.close();
    }
  });

  it('openKafkaEventLog rejects at once and leaves nothing running', async () => {
    const port = await closedPort();
    const logged: string[] = [];
    const note = (_: object, message: string) => void logged.push(message);
    const error = await openKafkaEventLog({
      brokers: [`127.0.0.1:${port}`],
      topic: 'shoal-unreachable',
      connectionTimeoutMs: 300,
      retries: 0,
      logger: { error: note, warn: note, info: note, debug: note },
    }).catch((e: unknown) => e);
    expect(error).toMatchObject({ code: 'LOG_UNAVAILABLE', retriable: true });
    // kafkajs's own lines go to the logger given, not to the console.
    expect(logged.some((line) => line.includes('ECONNREFUSED'))).toBe(true);
  });
});

import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createMemoryEventLog } from '../../adapters/eventlog';
import { createMemoryProjectionStore } from '../../adapters/projection-store/memory/memoryProjectionStore';
import { tagPushed } from '../../test/fixtures/events';
import { systemClock } from '../shared/clock';
import { validateConfig } from '../shared/config';
import { createHttpApp } from '../shared/http';
import { silentLogger } from '../shared/logger';
import { createProjectionRunner } from '../shared/projectionRunner';
import { createReplicationClient } from './client/replicationClient';
import { ReplicationConfigSchema, ReplicatorConfigSchema } from './config';
import { createReplicatorComponent, startReplicator } from './main';

describe('the replicator as a role', () => {
  let dir: string;
  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), 'shoal-replicator-role-'));
  });
  afterEach(() => rmSync(dir, { recursive: true, force: true }));

  it('runs alone: the rules and status API and metrics on its own listener', async () => {
    const log = createMemoryEventLog();
    const running = await startReplicator({
      config: validateConfig(ReplicatorConfigSchema, {
        dataDir: dir,
        cluster: 'alone',
        listen: { port: 0 },
        replication: { allowedDestinations: ['http://127.0.0.1:*'] },
      }),
      logger: silentLogger(),
      clock: systemClock,
      log,
      store: createMemoryProjectionStore(),
    });
    try {
      const api = createReplicationClient(running.url);
      const { rule, position } = await api.addRule({
        name: 'to-b',
        repoPattern: 'team/**',
        destination: 'http://127.0.0.1:9',
      });
      expect(position).toBeGreaterThan(0);
      expect((await api.listRules({ minPosition: position })).map((r) => r.id)).toEqual([rule.id]);
      // It becomes active once it holds the lease (asynchronously, after the start).
      const deadline = Date.now() + 10_000;
      let status = await api.status();
      while (status.replicator !== 'active' && Date.now() < deadline) {
        await new Promise((resolve) => setTimeout(resolve, 20));
        status = await api.status();
      }
      expect(status.replicator).toBe('active');
      expect(status.rules.map((r) => r.id)).toEqual([rule.id]);
      const metrics = await (await fetch(`${running.url}/metrics`)).text();
      expect(metrics).toContain('shoal_replication_lag_positions');
      expect(metrics).toContain('service="replicator"');
      const [added] = await log.readBatch(1, { limit: 1 });
      // A request made it: the event names its caller (anonymous, open access) and address.
      expect(added?.metadata).toMatchObject({
        actor: 'anonymous',
        client: '127.0.0.1',
        cluster: 'alone',
      });
    } finally {
      await running.close();
    }
  });

  it('a rule like *a*a*a…*c against 255-character names leaves /health answering within 1 s', async () => {
    const log = createMemoryEventLog();
    const running = await startReplicator({
      config: validateConfig(ReplicatorConfigSchema, {
        dataDir: dir,
        cluster: 'redos',
        listen: { port: 0 },
        replication: { lock: { enabled: false }, allowedDestinations: ['http://127.0.0.1:*'] },
      }),
      logger: silentLogger(),
      clock: systemClock,
      log,
      store: createMemoryProjectionStore(),
    });
    try {
      const api = createReplicationClient(running.url);
      // With the backtracking regular expression this rule was, one name took hours.
      await api.addRule({
        name: 'redos',
        repoPattern: `${'*a'.repeat(40)}*c`,
        destination: 'http://127.0.0.1:9',
      });
      const name = 'a'.repeat(255);
      const head = await log.append(
        Array.from({ length: 20 }, (_, i) => tagPushed({ repo: name, tag: `t${i}` })),
      );
      let slowestMs = 0;
      let settled = false;
      const deadline = Date.now() + 30_000;
      while (!settled) {
        if (Date.now() > deadline) throw new Error('the replicator did not reach the head');
        const started = Date.now();
        const health = await fetch(`${running.url}/health`, { signal: AbortSignal.timeout(5000) });
        slowestMs = Math.max(slowestMs, Date.now() - started);
        expect(health.status).toBe(200);
        const [rule] = (await api.status()).rules;
        settled = rule !== undefined && rule.settled >= head;
      }
      expect(slowestMs).toBeLessThan(1000);
    } finally {
      await running.close();
    }
  });

  it('mounts into another app: routes and metrics there, nothing running until started', async () => {
    const log = createMemoryEventLog();
    const store = createMemoryProjectionStore();
    const component = createReplicatorComponent({
      config: validateConfig(ReplicationConfigSchema, {
        lock: { enabled: false },
        allowedDestinations: ['http://127.0.0.1:*'],
      }),
      cluster: 'host',
      dataDir: dir,
      readYourWritesTimeoutMs: 5000,
      logger: silentLogger(),
      clock: systemClock,
      log,
      store,
      actor: 'build-index',
    });
    const runner = createProjectionRunner({ log, store, projections: [...component.projections] });
    runner.start();
    const { app, metrics } = createHttpApp({ service: 'host', logger: silentLogger() });
    const mounted = await component.mount({ app, metrics, runner });
    try {
      await app.listen({ host: '127.0.0.1', port: 0 });
      const url = `http://127.0.0.1:${(app.server.address() as { port: number }).port}`;
      const api = createReplicationClient(url);
      expect((await api.status()).replicator).toBe('stopped');
      mounted.start();
      expect((await api.status()).replicator).not.toBe('not-running');
      await api.addRule({ repoPattern: '**', destination: 'http://127.0.0.1:9' });
      const [added] = await log.readBatch(1, { limit: 1 });
      expect(added?.metadata).toMatchObject({ actor: 'anonymous', cluster: 'host' });
    } finally {
      await mounted.close();
      await app.close();
      await runner.stop();
    }
  });

  it('refuses bad credentials before anything runs', () => {
    expect(() =>
      createReplicatorComponent({
        config: validateConfig(ReplicationConfigSchema, { credentials: '{not json' }),
        cluster: 'c',
        dataDir: dir,
        readYourWritesTimeoutMs: 5000,
        logger: silentLogger(),
        clock: systemClock,
        log: createMemoryEventLog(),
        store: createMemoryProjectionStore(),
        actor: 'x',
      }),
    ).toThrow(/not valid JSON/);
  });
});

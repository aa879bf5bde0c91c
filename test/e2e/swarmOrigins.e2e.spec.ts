import { randomBytes } from 'node:crypto';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Service } from '../fixtures/cli';
import { startService, stopChild, tempDir } from '../fixtures/cli';
import { until } from '../fixtures/processes';
import { sha256 } from '../fixtures/blobs';
import { serviceFetch } from '../fixtures/security';

// Origins failing under a swarm, with separate processes: two origins holding every blob
// (R = 2, one SQLite log in a shared data directory), a tracker over both and four agents.
// Rates are capped (origins' seeder egress, agents' ingress and egress) so that a pull lasts
// several seconds; one origin is killed with SIGKILL once it has sent pieces, and every
// agent still completes, from the other origin and from each other.
const MiB = 1024 * 1024;
const agentCount = 4;
const blobSize = 24 * MiB;
const agentRate = 4 * MiB;
const originRate = 3 * MiB;

type P2pStatus = {
  totals: { bytesUploaded: number };
  swarms: Array<{ digest: string; have?: number; pieces?: number }>;
};

const status = async (url: string): Promise<P2pStatus> =>
  (await (await serviceFetch(`${url}/internal/p2p`)).json()) as P2pStatus;

describe('the swarm when an origin replica is killed mid-pull (separate processes)', () => {
  let dir: ReturnType<typeof tempDir>;
  const services: Service[] = [];
  const origins: Service[] = [];
  let agents: Service[] = [];

  /** Writes a role's YAML file and starts `shoal <role> --config <file>`. */
  const start = async (role: string, name: string, lines: string[], ready: RegExp) => {
    const file = join(dir.path, `${name}.yaml`);
    writeFileSync(file, `${lines.join('\n')}\n`);
    const service = await startService([role, '--config', file], ready, {}, 60_000);
    services.push(service);
    return service;
  };

  beforeAll(async () => {
    dir = tempDir('shoal-swarm-origins-e2e-');
    const data = join(dir.path, 'data');
    const base = 20000 + Math.floor(Math.random() * 12000);
    // One at a time: the first creates the data directory the other then opens.
    for (const [i, id] of ['o1', 'o2'].entries()) {
      origins.push(
        await start(
          'origin',
          `origin-${id}`,
          [
            `id: ${id}`,
            `dataDir: ${JSON.stringify(data)}`,
            'listen: { host: 127.0.0.1, port: 0 }',
            'replicas: 2',
            'logLevel: warn',
            'p2p:',
            `  port: ${base + i}`,
            `  bandwidth: { egressBytesPerSecond: ${originRate} }`,
          ],
          new RegExp(`origin ${id} listening on (http://\\S+)`),
        ),
      );
    }
    const tracker = await startService(
      ['tracker', '--host', '127.0.0.1', '--port', '0', '--origin', ...origins.map((o) => o.url)],
      /tracker listening on (http:\/\/\S+)/,
      { SHOAL_ANNOUNCE_INTERVAL_MS: '1000', SHOAL_LOG_LEVEL: 'warn' },
    );
    services.push(tracker);
    agents = await Promise.all(
      Array.from({ length: agentCount }, (_, i) => {
        mkdirSync(join(dir.path, `agent-${i}`));
        return start(
          'agent',
          `agent-${i}`,
          [
            `id: a${i}`,
            `dataDir: ${JSON.stringify(join(dir.path, `agent-${i}`))}`,
            'listen: { host: 127.0.0.1, port: 0 }',
            'logLevel: warn',
            'p2p:',
            `  bandwidth: { ingressBytesPerSecond: ${agentRate}, egressBytesPerSecond: ${agentRate} }`,
            `trackers: { urls: [${tracker.url}] }`,
            'cache: { fsync: false }',
          ],
          /agent \S+ listening on (http:\/\/\S+)/,
        );
      }),
    );
  }, 180_000);

  afterAll(async () => {
    await Promise.all(services.map((s) => s.stop()));
    dir?.cleanup();
  }, 60_000);

  it('kill -9 of one origin mid-pull: every agent completes from the other', async () => {
    const content = randomBytes(blobSize);
    const digest = sha256(content);
    const put = await serviceFetch(
      `${(origins[0] as Service).url}/internal/blobs/${digest}?repo=e2e/origins`,
      { method: 'PUT', body: content, headers: { 'content-type': 'application/octet-stream' } },
    );
    expect(put.ok).toBe(true);
    // R = 2 with two origins: both hold it (the second by replication, asynchronously).
    await until(
      async () => {
        const held = await Promise.all(
          origins.map(async (o) => {
            const head = await serviceFetch(`${o.url}/internal/blobs/${digest}?local=1`, {
              method: 'HEAD',
            });
            return head.status === 200;
          }),
        );
        return held.every(Boolean);
      },
      60_000,
      'the blob on both origins',
    );

    const started = Date.now();
    const pulls = Promise.all(
      agents.map(async (agent) => {
        const response = await fetch(`${agent.url}/blobs/${digest}`);
        const body = Buffer.from(await response.arrayBuffer());
        if (response.status !== 200) throw new Error(`${response.status} ${body.toString()}`);
        return sha256(body);
      }),
    );
    pulls.catch(() => undefined);

    // Mid-pull: agents hold some pieces, none holds all, and an origin has sent 2 MiB or more.
    let sent: number[] = [];
    await until(
      async () => {
        sent = await Promise.all(
          origins.map(async (o) => (await status(o.url)).totals.bytesUploaded),
        );
        const have = await Promise.all(
          agents.map(async (a) => (await status(a.url)).swarms.find((s) => s.digest === digest)),
        );
        const some = have.some((s) => (s?.have ?? 0) > 0);
        const none = have.every((s) => s === undefined || (s.have ?? 0) < (s.pieces ?? 1));
        return some && none && Math.max(...sent) >= 2 * MiB;
      },
      60_000,
      'the pull to be under way',
    );
    const victimIndex = (sent[0] ?? 0) >= (sent[1] ?? 0) ? 0 : 1;
    const victim = origins[victimIndex] as Service;
    const survivor = origins[1 - victimIndex] as Service;
    const survivorBefore = (await status(survivor.url)).totals.bytesUploaded;
    await stopChild(victim.child, 'SIGKILL');
    const killedAt = Date.now();

    expect(await pulls).toEqual(Array(agentCount).fill(digest));
    const survivorAfter = (await status(survivor.url)).totals.bytesUploaded;
    process.stderr.write(
      `origins: the victim had sent ${(Math.max(...sent) / MiB).toFixed(1)} MiB when killed ` +
        `${((killedAt - started) / 1000).toFixed(1)} s into the pull; the survivor sent ` +
        `${((survivorAfter - survivorBefore) / MiB).toFixed(1)} MiB after; all done ` +
        `${((Date.now() - killedAt) / 1000).toFixed(1)} s after the kill\n`,
    );
    // The pieces nobody held yet came from the survivor.
    expect(survivorAfter).toBeGreaterThan(survivorBefore);
  }, 180_000);
});

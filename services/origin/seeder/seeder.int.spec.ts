import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { openPieceStore } from '../../../p2p/pieces';
import type { SwarmHost } from '../../../p2p/swarm';
import { createSwarmHost } from '../../../p2p/swarm';
import { systemClock } from '../../shared/clock';
import { validateConfig } from '../../shared/config';
import { silentLogger } from '../../shared/logger';
import { createTrackerClient } from '../../tracker/client/trackerClient';
import { TrackerConfigSchema } from '../../tracker/config';
import type { RunningTracker } from '../../tracker/main';
import { startTracker } from '../../tracker/main';
import { createOriginClient } from '../client/originClient';
import type { OriginHarness } from '../../../test/doubles/originHarness';
import { blobFixture, sha256 } from '../../../test/fixtures/blobs';
import { randomRepo } from '../../../test/fixtures/events';
import { createOriginHarness } from '../../../test/doubles/originHarness';
import { freePort } from '../../../test/fixtures/ports';

const MiB = 1024 * 1024;

describe('the origin seeder in a swarm', () => {
  let harness: OriginHarness;
  let tracker: RunningTracker;
  const hosts: SwarmHost[] = [];

  beforeEach(() => {
    harness = createOriginHarness();
  });

  afterEach(async () => {
    await Promise.all(hosts.splice(0).map((h) => h.close()));
    await tracker?.close();
    await harness.cleanup();
  });

  it('joins when the tracker asks and serves pieces; agents mostly trade', async () => {
    const origin = await harness.start({
      p2p: { port: await freePort(), bandwidth: { egressBytesPerSecond: 4 * MiB } },
    });
    const blob = blobFixture(4 * MiB);
    const client = createOriginClient(origin.url);
    await client.putBlob(blob.digest, blob.content, { repo: randomRepo(), size: blob.size });
    tracker = await startTracker({
      config: validateConfig(TrackerConfigSchema, {
        listen: { port: 0 },
        origins: { urls: [origin.url] },
        announce: { intervalMs: 300 },
      }),
      logger: silentLogger(),
      clock: systemClock,
    });
    const trackers = createTrackerClient([tracker.url]);
    const metainfo = await trackers.metainfo(blob.digest);

    const agents = await Promise.all(
      Array.from({ length: 4 }, () =>
        createSwarmHost({ listen: { host: '127.0.0.1', port: 0 }, announcer: trackers }),
      ),
    );
    hosts.push(...agents);
    const stores = await Promise.all(
      agents.map((_, i) =>
        openPieceStore({ dir: join(harness.dir, `agent-${i}`), metainfo, fsync: false }),
      ),
    );
    await Promise.all(agents.map((agent, i) => agent.join(metainfo, stores[i] as never).done));
    for (const store of stores) {
      const bytes = readFileSync(store.path);
      expect(sha256(bytes)).toBe(blob.digest);
      await store.close();
    }

    const status = (await (await fetch(`${origin.url}/internal/p2p`)).json()) as {
      totals: { bytesUploaded: number };
      swarms: Array<{ digest: string }>;
    };
    expect(status.swarms.map((s) => s.digest)).toEqual([blob.digest]);
    expect(status.totals.bytesUploaded).toBeGreaterThanOrEqual(blob.size);
    expect(status.totals.bytesUploaded).toBeLessThan(3 * blob.size);
    const metrics = await (await fetch(`${origin.url}/metrics`)).text();
    expect(metrics).toMatch(/shoal_origin_p2p_sent_bytes_total\{[^}]*\} \d+/);
    await client.close();
  }, 30_000);

  it('answers BLOB_UNKNOWN for a blob it lacks; no seeder when p2p.port is 0', async () => {
    const withSeeder = await harness.start({ id: 'a', p2p: { port: await freePort() } });
    const unknown = await fetch(`${withSeeder.url}/internal/p2p/swarms/${blobFixture(10).digest}`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ tracker: 'http://127.0.0.1:1' }),
    });
    expect(unknown.status).toBe(404);
    const without = await harness.start({ id: 'b' });
    expect((await fetch(`${without.url}/internal/p2p`)).status).toBe(404);
  }, 20_000);
});

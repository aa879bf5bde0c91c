import { randomBytes } from 'node:crypto';
import type { IncomingMessage, Server, ServerResponse } from 'node:http';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Metainfo } from '../../p2p/metainfo';
import { MetainfoBuilder, encodeMetainfo, infoHash } from '../../p2p/metainfo';
import { systemClock } from '../shared/clock';
import { validateConfig } from '../shared/config';
import { silentLogger } from '../shared/logger';
import { initClusterCertificates } from '../shared/security/clusterCa';
import type { ClientIdentity } from '../shared/security/clientIdentity';
import { createRoleSecurity } from '../shared/security/roleSecurity';
import { createServiceTokens, readServiceKey } from '../shared/security/serviceIdentity';
import type { ServiceRole } from '../shared/security/subject';
import { tempDir } from '../../test/fixtures/cli';
import { createTrackerClient } from './client/trackerClient';
import { createTrackerStatusClient } from './client/trackerStatusClient';
import { TrackerConfigSchema } from './config';
import type { RunningTracker } from './main';
import { startTracker } from './main';

/** A stand-in origin: the ring (itself), metainfo of the blobs it holds, a seeder. */
const fakeOrigin = async (blobs: Metainfo[]) => {
  const calls = { metainfo: 0, join: [] as Array<{ digest: string; tracker: string }> };
  const byDigest = new Map(blobs.map((m) => [m.digest, m]));
  let url = '';
  const peerId = randomBytes(20).toString('hex');
  const handler = (request: IncomingMessage, response: ServerResponse) => {
    const send = (status: number, body: unknown) => {
      response.writeHead(status, { 'content-type': 'application/json' });
      response.end(JSON.stringify(body));
    };
    const path = decodeURIComponent(request.url ?? '');
    let m: RegExpExecArray | null;
    if (path.startsWith('/internal/ring')) {
      send(200, { self: 'o1', replicas: 1, members: [{ id: 'o1', address: url }] });
    } else if ((m = /^\/internal\/blobs\/(.+)\/metainfo$/.exec(path))) {
      calls.metainfo += 1;
      const metainfo = byDigest.get(m[1] as string);
      if (metainfo === undefined) send(404, { code: 'BLOB_UNKNOWN', detail: 'unknown' });
      else send(200, JSON.parse(encodeMetainfo(metainfo)));
    } else if ((m = /^\/internal\/p2p\/swarms\/(.+)$/.exec(path))) {
      let body = '';
      request.on('data', (chunk: Buffer) => (body += chunk.toString()));
      request.on('end', () => {
        const digest = m?.[1] as string;
        calls.join.push({ digest, tracker: (JSON.parse(body) as { tracker: string }).tracker });
        const metainfo = byDigest.get(digest);
        if (metainfo === undefined) send(404, { code: 'BLOB_UNKNOWN', detail: 'unknown' });
        else send(200, { infoHash: infoHash(metainfo), peerId, address: '127.0.0.1:7999' });
      });
    } else send(404, { code: 'NAME_UNKNOWN' });
  };
  const server: Server = createServer(handler);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  return {
    url,
    peerId,
    calls,
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
};

const metainfoOf = (size: number): Metainfo =>
  new MetainfoBuilder(256 * 1024).update(randomBytes(size)).digest();

describe('the tracker service', () => {
  const blob = metainfoOf(600_000);
  let origin: Awaited<ReturnType<typeof fakeOrigin>>;
  let trackers: RunningTracker[];

  const start = async (interval = 1000) => {
    const tracker = await startTracker({
      config: validateConfig(TrackerConfigSchema, {
        listen: { port: 0 },
        origins: { urls: [origin.url] },
        announce: { intervalMs: interval, originsBelowComplete: 2 },
      }),
      logger: silentLogger(),
      clock: systemClock,
    });
    trackers.push(tracker);
    return tracker;
  };

  const peer = (n: number, extra: { complete?: boolean } = {}) => ({
    infoHash: infoHash(blob),
    digest: blob.digest,
    peerId: n.toString(16).padStart(40, '0'),
    address: `127.0.0.${n}:7001`,
    complete: extra.complete ?? false,
    have: 0,
    origin: false,
  });

  beforeEach(async () => {
    origin = await fakeOrigin([blob]);
    trackers = [];
  });

  afterEach(async () => {
    await Promise.all(trackers.map((t) => t.close()));
    await origin.close();
  });

  it('serves metainfo from the owning origin and caches it', async () => {
    const tracker = await start();
    const client = createTrackerClient([tracker.url]);
    expect(await client.metainfo(blob.digest as never)).toEqual(blob);
    expect(await client.metainfo(blob.digest as never)).toEqual(blob);
    expect(origin.calls.metainfo).toBe(1);
    await expect(client.metainfo(metainfoOf(1000).digest as never)).rejects.toMatchObject({
      code: 'BLOB_UNKNOWN',
    });
  });

  it('hands out other peers, and while few are complete the origins it asked in', async () => {
    const tracker = await start();
    const client = createTrackerClient([tracker.url]);
    const first = await client.announce(peer(1));
    expect(origin.calls.join).toEqual([{ digest: blob.digest, tracker: tracker.url }]);
    expect(first.peers).toEqual([
      { peerId: origin.peerId, address: '127.0.0.1:7999', origin: true, complete: true },
    ]);
    const second = await client.announce(peer(2));
    expect(second.peers.map((p) => p.address).sort()).toEqual(['127.0.0.1:7001', '127.0.0.1:7999']);
    expect(second.intervalMs).toBe(1000);
    // Once enough agents are complete, origins are left out.
    await client.announce(peer(3, { complete: true }));
    await client.announce(peer(4, { complete: true }));
    const later = await client.announce(peer(1));
    expect(later.peers.some((p) => p.origin)).toBe(false);
    expect(later.peers.slice(0, 2).every((p) => p.complete)).toBe(true);
    // A complete peer gets nobody; a stopped one is forgotten at once.
    expect((await client.announce(peer(3, { complete: true }))).peers).toEqual([]);
    await client.announce({ ...peer(2), stopped: true });
    expect((await client.announce(peer(1))).peers.map((p) => p.address)).not.toContain(
      '127.0.0.2:7001',
    );
  });

  it('backs announce intervals off once a peer has peers; complete peers at once', async () => {
    const tracker = await start(1000);
    const client = createTrackerClient([tracker.url]);
    const intervals = [];
    for (let i = 0; i < 5; i += 1) intervals.push((await client.announce(peer(1))).intervalMs);
    expect(intervals).toEqual([1000, 2000, 4000, 4000, 4000]);
    expect((await client.announce(peer(2, { complete: true }))).intervalMs).toBe(4000);
    // A peer told to wait 4 s is still handed out to others (listed for three intervals).
    const other = await client.announce(peer(3));
    expect(other.peers.map((p) => p.address)).toEqual(
      expect.arrayContaining(['127.0.0.1:7001', '127.0.0.2:7001']),
    );
  });

  it("GET /swarms shows each peer's progress, its completion and its leaving", async () => {
    const tracker = await start();
    const client = createTrackerClient([tracker.url]);
    const status = createTrackerStatusClient(tracker.url);
    expect((await status.swarms()).swarms).toEqual([]);
    await client.announce({
      ...peer(1),
      have: 1,
      downloaded: 262_144,
      fromOrigins: 262_144,
      left: 337_856,
    });
    await client.announce({ ...peer(2), have: 0, downloaded: 0, left: 600_000 });
    let [swarm] = (await status.swarms()).swarms;
    expect(swarm).toMatchObject({ digest: blob.digest, infoHash: infoHash(blob) });
    // The origin the tracker asked in is listed too, as an origin.
    const agent1 = swarm?.peers.find((p) => p.address === '127.0.0.1:7001');
    expect(agent1).toMatchObject({
      have: 1,
      downloaded: 262_144,
      fromOrigins: 262_144,
      active: true,
    });
    expect(agent1?.completedAt).toBeUndefined();
    await client.announce({
      ...peer(1, { complete: true }),
      have: 3,
      downloaded: 600_000,
      left: 0,
    });
    await client.announce({ ...peer(2), stopped: true });
    [swarm] = (await status.swarms()).swarms;
    const done = swarm?.peers.find((p) => p.address === '127.0.0.1:7001');
    expect(done).toMatchObject({ complete: true, left: 0, downloaded: 600_000, active: true });
    expect(done?.completedAt).toBeGreaterThanOrEqual(done?.firstSeenAt as number);
    const left = swarm?.peers.find((p) => p.address === '127.0.0.2:7001');
    expect(left).toMatchObject({ active: false });
    expect(left?.stoppedAt).toBeDefined();
    const limited = await fetch(`${tracker.url}/swarms?limit=0`);
    expect(limited.status).toBe(400);
  });

  it('rejects malformed announces', async () => {
    const tracker = await start();
    for (const bad of [{ infoHash: 'nope' }, { zone: 'a zone with spaces' }]) {
      const response = await fetch(`${tracker.url}/announce`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ ...peer(1), ...bad }),
      });
      expect(response.status).toBe(400);
    }
  });

  it("hands out peers of the announcer's zone first (sameZoneShare)", async () => {
    const tracker = await startTracker({
      config: validateConfig(TrackerConfigSchema, {
        listen: { port: 0 },
        origins: { urls: [origin.url] },
        announce: { handoutSize: 3, sameZoneShare: 1, originsBelowComplete: 0 },
      }),
      logger: silentLogger(),
      clock: systemClock,
    });
    trackers.push(tracker);
    const client = createTrackerClient([tracker.url]);
    for (let n = 1; n <= 12; n += 1) {
      await client.announce({ ...peer(n), zone: n <= 4 ? 'hall-a/rack-1' : 'hall-b' });
    }
    for (let i = 0; i < 5; i += 1) {
      const answer = await client.announce({ ...peer(1), zone: 'hall-a/rack-1' });
      expect(answer.peers.map((p) => p.address).sort()).toEqual(
        ['127.0.0.2:7001', '127.0.0.3:7001', '127.0.0.4:7001'].sort(),
      );
    }
    // Without a zone: any three of the others.
    const anywhere = await client.announce(peer(1));
    expect(anywhere.peers).toHaveLength(3);
  });

  it('agents pick a tracker by rendezvous hash, and the next when it is gone', async () => {
    const a = await start();
    const b = await start();
    const client = createTrackerClient([a.url, b.url], { timeoutMs: 2000 });
    const [home, next] = client.rank(blob.digest);
    expect(new Set([home, next])).toEqual(new Set([a.url, b.url]));
    await client.announce(peer(1));
    const homeTracker = trackers.find((t) => t.url === home) as RunningTracker;
    await homeTracker.close();
    trackers = trackers.filter((t) => t !== homeTracker);
    // The swarm re-forms on the next tracker: it asks the origins to join again.
    await client.announce(peer(1));
    const answer = await client.announce(peer(2));
    expect(answer.peers.map((p) => p.address)).toContain('127.0.0.1:7001');
    expect(origin.calls.join.map((j) => j.tracker)).toEqual([home, next]);
  });
});

describe('the tracker with security required', () => {
  const blob = metainfoOf(300_000);
  const dir = tempDir('shoal-tracker-security-');
  let serviceKeyFile: string;
  let origin: Awaited<ReturnType<typeof fakeOrigin>>;
  let tracker: RunningTracker;

  /** A service token of the cluster for `role/name`, as that service presents it. */
  const as = (role: ServiceRole, name: string): ClientIdentity => {
    const tokens = createServiceTokens({
      key: readServiceKey(serviceKeyFile),
      self: { role, name },
      ttlSeconds: 60,
    });
    return { headers: async () => ({ authorization: `Bearer ${await tokens.token()}` }) };
  };
  const announce = (identity: ClientIdentity | undefined, asOrigin: boolean) =>
    createTrackerClient([tracker.url], { ...(identity !== undefined && { identity }) }).announce({
      infoHash: infoHash(blob),
      digest: blob.digest,
      peerId: (asOrigin ? 'e' : 'a').repeat(40),
      address: asOrigin ? '127.0.0.9:7001' : '127.0.0.8:7001',
      complete: asOrigin,
      have: 0,
      origin: asOrigin,
    });

  beforeAll(async () => {
    serviceKeyFile = initClusterCertificates({ dir: dir.path, roles: [] }).serviceKeyFile;
    origin = await fakeOrigin([blob]);
    const config = validateConfig(TrackerConfigSchema, {
      listen: { port: 0 },
      origins: { urls: [origin.url] },
      security: { mode: 'required', serviceKeyFile },
    });
    tracker = await startTracker({
      config,
      logger: silentLogger(),
      clock: systemClock,
      security: createRoleSecurity(config, { role: 'tracker', name: '1' }, silentLogger()),
    });
  });
  afterAll(async () => {
    await tracker.close();
    await origin.close();
    dir.cleanup();
  });

  it('refuses an announce without a cluster identity, and one from a proxy', async () => {
    await expect(announce(undefined, false)).rejects.toMatchObject({ code: 'UNAUTHORIZED' });
    await expect(announce(as('proxy', '1'), false)).rejects.toMatchObject({ code: 'DENIED' });
  });

  it('refuses a fake origin: origin: true from an agent identity', async () => {
    await expect(announce(as('agent', 'h1'), true)).rejects.toMatchObject({ code: 'DENIED' });
    // The agent announcing as what it is, and the real origin as an origin, are taken.
    const answer = await announce(as('agent', 'h1'), false);
    expect(answer.peers.map((p) => p.origin)).toEqual([true]);
    await expect(announce(as('origin', '2'), true)).resolves.toMatchObject({ peers: [] });
  });

  it('refuses a token signed with another key', async () => {
    const other = tempDir('shoal-tracker-other-');
    try {
      const otherKey = initClusterCertificates({ dir: other.path, roles: [] }).serviceKeyFile;
      const tokens = createServiceTokens({
        key: readServiceKey(otherKey),
        self: { role: 'origin', name: '1' },
        ttlSeconds: 60,
      });
      const forged = { headers: async () => ({ authorization: `Bearer ${await tokens.token()}` }) };
      await expect(announce(forged, true)).rejects.toMatchObject({ code: 'UNAUTHORIZED' });
    } finally {
      other.cleanup();
    }
  });
});

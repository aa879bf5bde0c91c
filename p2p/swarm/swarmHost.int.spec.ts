import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createBandwidth } from '../bandwidth';
import type { Metainfo } from '../metainfo';
import type { PieceStore } from '../pieces';
import { openPieceStore } from '../pieces';
import type { TestBlob } from '../../test/doubles/memoryPieces';
import { testBlob } from '../../test/doubles/memoryPieces';
import type { Announcement, Announcer } from './announcer';
import { openFilePieceSource } from './filePieceSource';
import type { SwarmHost } from './swarmHost';
import { createSwarmHost, parseAddress } from './swarmHost';
import { sha256 } from '../../test/fixtures/blobs';

const KiB = 1024;

/**
 * A tracker in memory: every announcer gets every other live peer of its swarm, and
 * `intervalMs` to announce again.
 */
const memoryTracker = (intervalMs = 100) => {
  const peers = new Map<string, Map<string, Announcement>>();
  const log: Announcement[] = [];
  const announcer: Announcer = {
    announce: async (a) => {
      log.push(a);
      let swarm = peers.get(a.infoHash);
      if (swarm === undefined) peers.set(a.infoHash, (swarm = new Map()));
      if (a.stopped) swarm.delete(a.peerId);
      else swarm.set(a.peerId, a);
      const others = [...swarm.values()].filter((p) => p.peerId !== a.peerId);
      return {
        peers: others.map((p) => ({
          peerId: p.peerId,
          address: p.address,
          origin: p.origin,
          complete: p.complete,
        })),
        intervalMs,
      };
    },
  };
  return { announcer, log };
};

describe('SwarmHost over TCP with piece stores on disk', () => {
  let dir: string;
  const hosts: SwarmHost[] = [];

  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), 'shoal-swarm-'));
  });

  afterEach(async () => {
    await Promise.all(hosts.splice(0).map((host) => host.close()));
    rmSync(dir, { recursive: true, force: true });
  });

  /** An origin seeding the blob from a file, its uploads limited to `egress` bytes/s. */
  const seedingOrigin = async (blob: TestBlob, announcer: Announcer, egress?: number) => {
    const blobPath = join(dir, 'origin-blob');
    writeFileSync(blobPath, blob.data);
    const origin = await createSwarmHost({
      origin: true,
      listen: { host: '127.0.0.1', port: 0 },
      announcer,
      ...(egress !== undefined && {
        bandwidth: createBandwidth({ egressBytesPerSecond: egress }),
      }),
    });
    hosts.push(origin);
    const source = await openFilePieceSource(blobPath, blob.metainfo);
    origin.join(blob.metainfo, source);
    return { origin, source };
  };

  /** A host joins a blob's swarm with an empty piece store of its own. */
  const joinFresh = async (host: SwarmHost, metainfo: Metainfo) => {
    const store = await openPieceStore({ dir: join(dir, 'agent'), metainfo, fsync: false });
    return { store, swarm: host.join(metainfo, store) };
  };

  it('agents fetch one blob from an origin and each other; every copy verifies', async () => {
    const blob = testBlob(3 * 1024 * KiB + 123, 256 * KiB);
    const tracker = memoryTracker();
    const { origin, source } = await seedingOrigin(blob, tracker.announcer, 2 * 1024 * KiB);

    const agents = await Promise.all(
      Array.from({ length: 4 }, () =>
        createSwarmHost({ listen: { host: '127.0.0.1', port: 0 }, announcer: tracker.announcer }),
      ),
    );
    hosts.push(...agents);
    const stores = await Promise.all(
      agents.map((_, i) =>
        openPieceStore({ dir: join(dir, `agent-${i}`), metainfo: blob.metainfo, fsync: false }),
      ),
    );
    const swarms = agents.map((agent, i) => agent.join(blob.metainfo, stores[i] as PieceStore));
    await Promise.all(swarms.map((swarm) => swarm.done));

    for (const store of stores) {
      expect(store.complete).toBe(true);
      expect(sha256(readFileSync(store.path))).toBe(blob.metainfo.digest);
    }
    const originSent = origin.totals().bytesUploaded;
    expect(originSent).toBeLessThan(4 * blob.data.length);
    expect(agents.reduce((n, a) => n + a.totals().bytesUploaded, 0)).toBeGreaterThan(0);
    // Complete agents announce completion.
    expect(tracker.log.some((a) => !a.origin && a.complete)).toBe(true);

    await Promise.all(swarms.map((swarm) => swarm.leave()));
    await Promise.all(stores.map((store) => store.close()));
    await source.close();
    expect(tracker.log.filter((a) => a.stopped).length).toBeGreaterThanOrEqual(4);
  }, 30_000);

  it('a host short of peers announces again before its interval is up', async () => {
    const blob = testBlob(512 * KiB, 256 * KiB);
    // Announce every minute: the test would time out waiting for a second regular announce.
    const tracker = memoryTracker(60_000);
    const agent = await createSwarmHost({
      listen: { host: '127.0.0.1', port: 0 },
      announcer: tracker.announcer,
      scheduler: { starvedAnnounceMs: 200 },
    });
    hosts.push(agent);
    // The agent joins first: its first answer names no peer.
    const { store, swarm } = await joinFresh(agent, blob.metainfo);
    const { source } = await seedingOrigin(blob, tracker.announcer);
    await swarm.done;
    const agentAnnounces = tracker.log.filter((a) => !a.origin && !a.stopped);
    expect(agentAnnounces.length).toBeGreaterThanOrEqual(2);
    await store.close();
    await source.close();
  }, 20_000);

  it('refuses unknown swarms unless resolveUnknown joins them', async () => {
    const blob = testBlob(512 * KiB, 256 * KiB);
    const blobPath = join(dir, 'cached');
    writeFileSync(blobPath, blob.data);
    let asked = 0;
    const ref: { seeder?: SwarmHost; source?: Awaited<ReturnType<typeof openFilePieceSource>> } =
      {};
    const seeder = await createSwarmHost({
      listen: { host: '127.0.0.1', port: 0 },
      resolveUnknown: async (infoHash) => {
        asked += 1;
        if (infoHash !== blob.infoHash || ref.seeder === undefined) return undefined;
        ref.source = await openFilePieceSource(blobPath, blob.metainfo);
        return ref.seeder.join(blob.metainfo, ref.source);
      },
    });
    ref.seeder = seeder;
    hosts.push(seeder);
    const agent = await createSwarmHost({ listen: { host: '127.0.0.1', port: 0 } });
    hosts.push(agent);
    const { store, swarm } = await joinFresh(agent, blob.metainfo);
    swarm.scheduler.addPeers([
      {
        peerId: seeder.peerId.toString('hex'),
        address: seeder.address,
        origin: false,
        complete: true,
      },
    ]);
    await swarm.done;
    expect(asked).toBe(1);
    expect(parseAddress(seeder.address).host).toBe('127.0.0.1');
    await store.close();
    await seeder.close();
    await ref.source?.close();
  }, 20_000);
});

import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createBandwidth } from '../bandwidth';
import type { PieceStore } from '../pieces';
import { openPieceStore } from '../pieces';
import { testBlob } from '../../test/doubles/memoryPieces';
import type { Announcement, Announcer } from './announcer';
import { openFilePieceSource } from './filePieceSource';
import type { SwarmHost } from './swarmHost';
import { createSwarmHost, parseAddress } from './swarmHost';
import { sha256 } from '../../test/fixtures/blobs';

const KiB = 1024;

/** A tracker in memory: every announcer gets every other live peer of its swarm. */
const memoryTracker = () => {
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
        intervalMs: 100,
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

  it('agents fetch one blob from an origin and each other; every copy verifies', async () => {
    const blob = testBlob(3 * 1024 * KiB + 123, 256 * KiB);
    const tracker = memoryTracker();
    const blobPath = join(dir, 'origin-blob');
    writeFileSync(blobPath, blob.data);
    const origin = await createSwarmHost({
      origin: true,
      listen: { host: '127.0.0.1', port: 0 },
      announcer: tracker.announcer,
      bandwidth: createBandwidth({ egressBytesPerSecond: 2 * 1024 * KiB }),
    });
    hosts.push(origin);
    const source = await openFilePieceSource(blobPath, blob.metainfo);
    origin.join(blob.metainfo, source);

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
    const store = await openPieceStore({
      dir: join(dir, 'agent'),
      metainfo: blob.metainfo,
      fsync: false,
    });
    const swarm = agent.join(blob.metainfo, store);
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

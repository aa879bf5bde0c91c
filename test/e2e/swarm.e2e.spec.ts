import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { Transform } from 'node:stream';
import { rankMembers } from '../../domain/placement';
import type { Metainfo } from '../../p2p/metainfo';
import type { PieceSource } from '../../p2p/scheduler';
import type { SwarmHost } from '../../p2p/swarm';
import { createSwarmHost, openFilePieceSource } from '../../p2p/swarm';
import { createTrackerClient } from '../../services/tracker/client/trackerClient';
import type { Service } from '../fixtures/cli';
import { startService, tempDir } from '../fixtures/cli';
import type { GeneratedImage } from '../fixtures/images';
import { generateImage } from '../fixtures/images';
import { sha256 } from '../fixtures/blobs';
import { runTool, until } from '../fixtures/processes';
import { serviceFetch, testIdentity } from '../fixtures/security';

// The swarm end to end, with separate processes: `shoal dev` (proxy, build-index, origin with
// its seeder), two `shoal tracker`s and eight `shoal agent`s, each agent limited to 8 MiB/s in
// and out. Images are pushed with skopeo through the proxy and pulled through the agents.
const root = resolve(__dirname, '../..');
const skopeo = '/usr/bin/skopeo';
const MiB = 1024 * 1024;
const agentCount = 8;
const layerSize = 16 * MiB;
const rate = 8 * MiB;

const run = (command: string, args: string[]) => runTool(command, args, { cwd: root });

type P2pStatus = {
  totals: { bytesUploaded: number; bytesDownloaded: number; badPieces: number };
  swarms: Array<{ digest: string; have: number; pieces: number }>;
};

const json = async <T>(url: string): Promise<T> => (await (await serviceFetch(url)).json()) as T;

describe('pulling through the swarm (separate processes)', () => {
  let dir: ReturnType<typeof tempDir>;
  let dev: Service;
  let proxyHost: string;
  let originUrl: string;
  const trackerPorts: number[] = [];
  const trackers: Array<Service | undefined> = [];
  let trackerUrls: string[];
  let agents: Array<Service | undefined>;
  let liar: SwarmHost | undefined;

  const startTracker = (port: number) =>
    startService(
      ['tracker', '--host', '127.0.0.1', '--port', String(port), '--origin', originUrl],
      /tracker listening on (http:\/\/\S+)/,
      { SHOAL_ANNOUNCE_INTERVAL_MS: '1000', SHOAL_LOG_LEVEL: 'warn' },
    );

  /** Pushes an image (one random layer) through the proxy. */
  const push = async (name: string): Promise<{ image: GeneratedImage; repo: string }> => {
    const image = await generateImage({
      dir: join(dir.path, name),
      layers: 1,
      layerSize,
      gzipLevel: 0,
    });
    const repo = `swarm/${name}-${randomBytes(3).toString('hex')}`;
    run(skopeo, [
      '--insecure-policy',
      'copy',
      '--dest-tls-verify=false',
      image.layoutRef,
      `docker://${proxyHost}/${repo}:v1`,
    ]);
    return { image, repo };
  };

  const layerOf = (image: GeneratedImage) => image.manifests[0]?.layers[0] as { digest: string };

  /** Every given agent fetches the blob at once; resolves with each one's bytes' digest. */
  const pullAll = (live: Service[], repo: string, digest: string) =>
    Promise.all(
      live.map(async (agent) => {
        const response = await fetch(`${agent.url}/v2/${repo}/blobs/${digest}`);
        const body = Buffer.from(await response.arrayBuffer());
        if (response.status !== 200) throw new Error(`${response.status} ${body.toString()}`);
        return sha256(body);
      }),
    );

  const originSent = async () =>
    (await json<P2pStatus>(`${originUrl}/internal/p2p`)).totals.bytesUploaded;

  const liveAgents = () => agents.filter((a): a is Service => a !== undefined);

  beforeAll(async () => {
    if (!existsSync(skopeo)) throw new Error('skopeo is missing: run test/services/tools.sh');
    dir = tempDir('shoal-swarm-e2e-');
    const base = 20000 + Math.floor(Math.random() * 12000);
    dev = await startService(
      ['dev', '--data-dir', join(dir.path, 'dev'), '--port-base', String(base)],
      /\bproxy\s+(http:\/\/\S+)/,
      {},
      60_000,
    );
    proxyHost = dev.url.replace(/^http:\/\//, '');
    const endpoints = JSON.parse(readFileSync(join(dir.path, 'dev', 'endpoints.json'), 'utf8'));
    originUrl = endpoints.origins[0];
    trackerPorts.push(base + 10, base + 11);
    trackers.push(...(await Promise.all(trackerPorts.map(startTracker))));
    trackerUrls = trackers.map((t) => (t as Service).url);
    agents = await Promise.all(
      Array.from({ length: agentCount }, async (_, i) => {
        const config = join(dir.path, `agent-${i}.yaml`);
        mkdirSync(join(dir.path, `agent-${i}`), { recursive: true });
        writeFileSync(
          config,
          [
            `id: a${i}`,
            `dataDir: ${join(dir.path, `agent-${i}`)}`,
            'listen: { host: 127.0.0.1, port: 0 }',
            'logLevel: warn',
            'p2p:',
            `  bandwidth: { ingressBytesPerSecond: ${rate}, egressBytesPerSecond: ${rate} }`,
            'trackers:',
            `  urls: [${trackerUrls.join(', ')}]`,
            `buildIndex: { url: ${endpoints.buildIndex} }`,
            `proxy: { url: ${endpoints.proxy} }`,
            'cache: { fsync: false }',
          ].join('\n'),
        );
        return startService(
          ['agent', '--config', config],
          /agent \S+ listening on (http:\/\/\S+)/,
          {},
          60_000,
        );
      }),
    );
  }, 180_000);

  afterAll(async () => {
    await liar?.close();
    await Promise.all(liveAgents().map((a) => a.stop()));
    await Promise.all(trackers.map((t) => t?.stop()));
    await dev?.stop();
    dir?.cleanup();
  }, 60_000);

  it('8 agents pull one image at once; the origin sends far less than 8 × its size', async () => {
    const { image, repo } = await push('all');
    const layer = layerOf(image);
    const before = await originSent();
    const started = Date.now();
    const digests = await pullAll(liveAgents(), repo, layer.digest);
    const seconds = (Date.now() - started) / 1000;
    expect(digests).toEqual(Array(agentCount).fill(layer.digest));
    const sent = (await originSent()) - before;
    process.stderr.write(
      `swarm: ${agentCount} agents × ${layerSize / MiB} MiB in ${seconds.toFixed(1)} s; ` +
        `origin sent ${(sent / MiB).toFixed(1)} MiB (${(sent / layerSize).toFixed(2)} × size)\n`,
    );
    expect(sent).toBeLessThan((agentCount * layerSize) / 3);

    // The image through an agent with skopeo, as a registry mirror would serve it.
    const agent = liveAgents()[0] as Service;
    const pulled = join(dir.path, 'pulled');
    run(skopeo, [
      '--insecure-policy',
      'copy',
      '--src-tls-verify=false',
      `docker://${agent.url.replace(/^http:\/\//, '')}/${repo}:v1`,
      `oci:${pulled}:v1`,
    ]);
    const index = JSON.parse(readFileSync(join(pulled, 'index.json'), 'utf8'));
    expect(index.manifests[0].digest).toBe(image.top.digest);
    for (const m of image.manifests) {
      for (const blob of [m.manifest, m.config, ...m.layers]) {
        const bytes = readFileSync(join(pulled, 'blobs', 'sha256', blob.digest.slice(7)));
        expect(sha256(bytes)).toBe(blob.digest);
      }
    }
  }, 180_000);

  it('an agent killed with SIGKILL mid-swarm does not stop the others', async () => {
    const { image, repo } = await push('kill');
    const layer = layerOf(image);
    const victim = agents[agentCount - 1] as Service;
    const others = liveAgents().filter((a) => a !== victim);
    const pulls = pullAll(others, repo, layer.digest);
    void fetch(`${victim.url}/v2/${repo}/blobs/${layer.digest}`).catch(() => undefined);
    await until(
      async () => {
        const status = await json<P2pStatus>(`${victim.url}/internal/p2p`).catch(() => undefined);
        const swarm = status?.swarms.find((s) => s.digest === layer.digest);
        return swarm !== undefined && swarm.have > 0 && swarm.have < swarm.pieces;
      },
      60_000,
      'the victim to be mid-download',
    );
    victim.child.kill('SIGKILL');
    agents[agentCount - 1] = undefined;
    expect(await pulls).toEqual(Array(others.length).fill(layer.digest));
  }, 180_000);

  it('a peer serving corrupt pieces is caught and blacklisted; pulls are right', async () => {
    const { image, repo } = await push('liar');
    const layer = layerOf(image);
    const metainfo = await createTrackerClient(trackerUrls, {
      identity: testIdentity('agent'),
    }).metainfo(layer.digest as never);
    // The liar claims the whole blob and announces itself as a complete agent: trackers hand
    // complete agents out first, so every agent meets it.
    liar = await createSwarmHost({
      listen: { host: '127.0.0.1', port: 0 },
      announcer: createTrackerClient(trackerUrls, { identity: testIdentity('agent') }),
      announceRetryMs: { min: 200, max: 1000 },
    });
    const honest = await openFilePieceSource(
      join(image.dir, 'blobs', 'sha256', layer.digest.slice(7)),
      metainfo,
    );
    const swarm = liar.join(metainfo, corrupting(honest, metainfo));
    await until(
      async () => swarm.scheduler.stats.startedAt > 0 && swarm.scheduler.complete,
      5000,
      'the liar to seed',
    );
    await new Promise((r) => setTimeout(r, 300)); // its first announce reached the tracker
    const live = liveAgents();
    const before = await Promise.all(
      live.map(async (a) => (await json<P2pStatus>(`${a.url}/internal/p2p`)).totals.badPieces),
    );
    expect(await pullAll(live, repo, layer.digest)).toEqual(Array(live.length).fill(layer.digest));
    const after = await Promise.all(
      live.map(async (a) => (await json<P2pStatus>(`${a.url}/internal/p2p`)).totals.badPieces),
    );
    const detected = after.reduce((n, bad, i) => n + bad - (before[i] ?? 0), 0);
    process.stderr.write(`liar: sent ${swarm.scheduler.stats.bytesUploaded} bytes, `);
    process.stderr.write(`${detected} bad pieces detected\n`);
    expect(swarm.scheduler.stats.bytesUploaded).toBeGreaterThan(0);
    expect(detected).toBeGreaterThan(0);
    await liar.close();
    liar = undefined;
    await honest.close();
  }, 180_000);

  it('losing the home tracker moves the swarm on; after a restart it re-forms', async () => {
    const { image, repo } = await push('tracker');
    const layer = layerOf(image);
    const home = rankMembers(layer.digest, trackerUrls)[0] as string;
    const index = trackerUrls.indexOf(home);
    const live = liveAgents();
    const pulls = pullAll(live, repo, layer.digest);
    await until(
      async () => {
        const status = await json<P2pStatus>(`${live[0]?.url}/internal/p2p`);
        return (status.swarms.find((s) => s.digest === layer.digest)?.have ?? 0) > 0;
      },
      60_000,
      'the swarm to start',
    );
    (trackers[index] as Service).child.kill('SIGKILL');
    const killed = Date.now();
    trackers[index] = undefined;
    expect(await pulls).toEqual(Array(live.length).fill(layer.digest));
    // Every agent's next announce goes to the tracker the digest ranks second: the swarm is
    // there within one announce interval (complete peers announce every maxIntervalMs, 4 × 3 s).
    const next = rankMembers(layer.digest, trackerUrls)[1] as string;
    await until(
      async () => {
        const { swarms } = await json<{ swarms: { digest: string; activePeers: number }[] }>(
          `${next}/swarms?limit=1000`,
        );
        const swarm = swarms.find((s) => s.digest === layer.digest);
        return (swarm?.activePeers ?? 0) >= live.length;
      },
      60_000,
      'the next tracker to hold the swarm',
    );
    const moved = Date.now() - killed;
    process.stdout.write(
      `swarm.e2e: the swarm moved to the next tracker ${moved} ms after kill -9\n`,
    );
    expect(moved).toBeLessThan(4 * 3000 + 5000);

    // The tracker comes back empty; seeding agents re-announce and the swarm re-forms there.
    trackers[index] = await startTracker(trackerPorts[index] as number);
    await until(
      async () => {
        const metrics = await (await fetch(`${home}/metrics`)).text();
        const peers = Number(/^shoal_tracker_peers(?:\{[^}]*\})? (\d+)/m.exec(metrics)?.[1] ?? 0);
        return peers >= live.length;
      },
      60_000,
      'the restarted tracker to learn the swarm again',
    );
  }, 180_000);
});

/** A source that flips bytes of every piece it sends: a lying peer. */
const corrupting = (source: PieceSource, metainfo: Metainfo): PieceSource => ({
  pieceCount: source.pieceCount,
  complete: true,
  count: source.count,
  has: (index) => source.has(index),
  bitfield: () => source.bitfield(),
  pieceSize: (index) => source.pieceSize(index) || metainfo.pieceLength,
  createReadStream: (index, begin, length) =>
    source.createReadStream(index, begin, length)?.pipe(
      new Transform({
        transform(chunk: Buffer, _encoding, done) {
          const copy = Buffer.from(chunk);
          copy[0] = (copy[0] ?? 0) ^ 0xff;
          done(null, copy);
        },
      }),
    ),
});

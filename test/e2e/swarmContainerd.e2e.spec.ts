import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { gunzipSync } from 'node:zlib';
import type { Service } from '../fixtures/cli';
import { startService, tempDir } from '../fixtures/cli';
import type { Containerd } from '../fixtures/containerd';
import { startContainerd } from '../fixtures/containerd';
import { generateImage } from '../fixtures/images';
import { sha256 } from '../fixtures/blobs';
import { runTool } from '../fixtures/processes';
import { serviceFetch } from '../fixtures/security';

// containerd pulls through the agent the way users deploy it: the agent as a registry mirror
// in hosts.toml. Its daemon runs as root with a private config, root, state and socket; the
// upstream named in hosts.toml does not exist, so every byte must come through the agent.
const root = resolve(__dirname, '../..');
const skopeo = '/usr/bin/skopeo';
const upstream = 'shoal.invalid';

const run = (command: string, args: string[]) => runTool(command, args, { cwd: root });

/** The one regular file in a gzipped single-file tar layer: its name and content digest. */
const fileOfLayer = (gz: Buffer): { name: string; digest: string } => {
  const tar = gunzipSync(gz);
  const name = tar.subarray(0, 100).toString('utf8').replace(/\0.*$/s, '');
  const size = parseInt(tar.subarray(124, 136).toString('ascii').replace(/\0.*$/s, '').trim(), 8);
  return { name, digest: sha256(tar.subarray(512, 512 + size)) };
};

/** Every file under `dir` with the given name (the native snapshotter's plain directories). */
const findFiles = (dir: string, name: string): string[] => {
  const out: string[] = [];
  const walk = (at: string) => {
    for (const entry of readdirSync(at, { withFileTypes: true })) {
      const path = join(at, entry.name);
      if (entry.isDirectory()) walk(path);
      else if (entry.name === name) out.push(path);
    }
  };
  walk(dir);
  return out;
};

describe('containerd pulls through the agent (hosts.toml mirror)', () => {
  let dir: ReturnType<typeof tempDir>;
  let dev: Service;
  let containerd: Containerd | undefined;

  beforeAll(async () => {
    if (!existsSync(skopeo))
      throw new Error(`missing ${skopeo}: run test/services/tools.sh install`);
    dir = tempDir('shoal-containerd-e2e-');
    const base = 20000 + Math.floor(Math.random() * 12000);
    dev = await startService(
      ['dev', '--data-dir', join(dir.path, 'dev'), '--port-base', String(base)],
      /\bproxy\s+(http:\/\/\S+)/,
      {},
      60_000,
    );
    containerd = await startContainerd(join(dir.path, 'containerd'));
  }, 120_000);

  afterAll(async () => {
    await containerd?.stop();
    await dev?.stop();
    dir?.cleanup();
  }, 60_000);

  it('pulls and unpacks an image whose blobs all come through the agent', async () => {
    const image = await generateImage({
      dir: join(dir.path, 'image'),
      layers: 2,
      layerSize: 2 * 1024 * 1024,
    });
    const repo = `mirror/app-${randomBytes(3).toString('hex')}`;
    const proxyHost = dev.url.replace(/^http:\/\//, '');
    run(skopeo, [
      '--insecure-policy',
      'copy',
      '--dest-tls-verify=false',
      image.layoutRef,
      `docker://${proxyHost}/${repo}:v1`,
    ]);
    const endpoints = JSON.parse(readFileSync(join(dir.path, 'dev', 'endpoints.json'), 'utf8'));
    const agent: string = endpoints.agents[0];
    const hosts = join(dir.path, 'hosts.d');
    mkdirSync(join(hosts, upstream), { recursive: true });
    writeFileSync(
      join(hosts, upstream, 'hosts.toml'),
      [
        `server = "https://${upstream}"`,
        `[host."${agent}"]`,
        '  capabilities = ["pull", "resolve"]',
      ].join('\n'),
    );

    const ref = `${upstream}/${repo}:v1`;
    const { ctr } = containerd as Containerd;
    await ctr('images', 'pull', '--hosts-dir', hosts, '--snapshotter', 'native', ref);
    expect(await ctr('images', 'ls')).toContain(image.top.digest);

    // Unpacked: every layer's file is in the snapshots with its content.
    const snapshots = join((containerd as Containerd).root, 'io.containerd.snapshotter.v1.native');
    for (const layer of image.manifests[0]?.layers ?? []) {
      const gz = readFileSync(join(image.dir, 'blobs', 'sha256', layer.digest.slice(7)));
      const file = fileOfLayer(gz);
      const copies = findFiles(snapshots, file.name);
      expect(copies.length).toBeGreaterThan(0);
      for (const copy of copies) expect(sha256(readFileSync(copy))).toBe(file.digest);
    }
    // The layers went through the agent's swarm.
    const status = (await (await serviceFetch(`${agent}/internal/p2p`)).json()) as {
      swarms: Array<{ digest: string; state: string }>;
    };
    for (const layer of image.manifests[0]?.layers ?? []) {
      expect(status.swarms.map((s) => s.digest)).toContain(layer.digest);
    }
  }, 180_000);
});

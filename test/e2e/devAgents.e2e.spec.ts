import { randomBytes } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import type { Service } from '../fixtures/cli';
import { startService, stopChild, tempDir } from '../fixtures/cli';
import { generateImage } from '../fixtures/images';
import { childPids, commandLine, isAlive, runTool, until } from '../fixtures/processes';
import { sha256 } from '../fixtures/blobs';

// `shoal dev --agents N` as users run it: agent 1 in the dev process, agents 2…N as child
// `shoal agent` processes on documented ports. An image pushed with skopeo through the proxy
// is pulled with skopeo through agent 3; stopping dev (SIGTERM) stops every agent, and
// killing it (SIGKILL) leaves none behind either: they notice their parent is gone.
const root = resolve(__dirname, '../..');
const skopeo = '/usr/bin/skopeo';

const run = (command: string, args: string[]) => runTool(command, args, { cwd: root });

type Endpoints = { proxy: string; buildIndex: string; trackers: string[]; agents: string[] };

describe('shoal dev --agents', () => {
  let dir: ReturnType<typeof tempDir>;

  beforeAll(() => {
    if (!existsSync(skopeo)) throw new Error('skopeo is missing: run test/services/tools.sh');
    dir = tempDir('shoal-dev-agents-e2e-');
  });
  afterAll(() => dir?.cleanup());

  const startDev = async (name: string, agents: number) => {
    const base = 20000 + Math.floor(Math.random() * 12000);
    const dataDir = join(dir.path, name);
    const dev = await startService(
      ['dev', '--data-dir', dataDir, '--port-base', String(base), '--agents', String(agents)],
      /\bproxy\s+(http:\/\/\S+)/,
      {},
      120_000,
    );
    const endpoints = JSON.parse(
      readFileSync(join(dataDir, 'endpoints.json'), 'utf8'),
    ) as Endpoints;
    return { dev, base, dataDir, endpoints };
  };

  /** The dev process's children: its `shoal agent` processes, each with its own config. */
  const agentChildren = (dev: Service, dataDir: string) => {
    const pids = childPids(dev.child.pid as number);
    const config = `${dataDir.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}/agents/agent-\\d+/agent\\.yaml`;
    for (const pid of pids) {
      expect(commandLine(pid)).toMatch(new RegExp(` agent --config ${config} --exit-with-parent$`));
    }
    return pids;
  };

  it('3 agents: pulled through agent 3 with skopeo; SIGTERM to dev stops them all', async () => {
    const { dev, base, dataDir, endpoints } = await startDev('term', 3);
    let children: number[] = [];
    try {
      // Agent 1 in process on P+1, agent n ≥ 2 on P+2n+6: the order of endpoints.json.
      expect(endpoints.agents).toEqual(
        [base + 1, base + 10, base + 12].map((port) => `http://127.0.0.1:${port}`),
      );
      expect(dev.output()).toMatch(/agent 3\s+http:\/\/127\.0\.0\.1:\d+ +\(pid \d+/);
      children = agentChildren(dev, dataDir);
      expect(children).toHaveLength(2);

      const image = await generateImage({
        dir: join(dir.path, 'image'),
        layers: 2,
        layerSize: 3 * 1024 * 1024,
      });
      const repo = `dev/agents-${randomBytes(3).toString('hex')}`;
      const proxyHost = dev.url.replace(/^http:\/\//, '');
      run(skopeo, [
        '--insecure-policy',
        'copy',
        '--dest-tls-verify=false',
        image.layoutRef,
        `docker://${proxyHost}/${repo}:v1`,
      ]);
      const agent3 = (endpoints.agents[2] as string).replace(/^http:\/\//, '');
      const pulled = join(dir.path, 'pulled');
      run(skopeo, [
        '--insecure-policy',
        'copy',
        '--src-tls-verify=false',
        `docker://${agent3}/${repo}:v1`,
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
      // The layers came through agent 3's swarm (it is a separate process with its own cache).
      const status = (await (await fetch(`${endpoints.agents[2]}/internal/p2p`)).json()) as {
        totals: { bytesDownloaded: number };
      };
      expect(status.totals.bytesDownloaded).toBeGreaterThanOrEqual(image.layerBytes);
    } finally {
      await dev.stop();
    }
    // dev waits for its children before it exits.
    expect(children.filter(isAlive)).toEqual([]);
    for (const url of endpoints.agents) {
      await expect(fetch(`${url}/health`)).rejects.toThrow();
    }
  }, 240_000);

  it('dev killed with SIGKILL: its agent processes exit by themselves', async () => {
    const { dev, dataDir, endpoints } = await startDev('kill', 3);
    const children = agentChildren(dev, dataDir);
    expect(children).toHaveLength(2);
    await stopChild(dev.child, 'SIGKILL');
    await until(() => children.every((pid) => !isAlive(pid)), 30_000, 'the agents to exit');
    for (const url of endpoints.agents) {
      await expect(fetch(`${url}/health`)).rejects.toThrow();
    }
  }, 240_000);
});

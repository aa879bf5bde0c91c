import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Service } from '../fixtures/cli';
import { shoal, startService, tempDir } from '../fixtures/cli';
import { checkoutPort, runTool as run } from '../fixtures/processes';
import type { GeneratedImage } from '../fixtures/images';
import { generateImage } from '../fixtures/images';
import type { UpstreamRegistry } from '../fixtures/upstreamRegistry';
import { upstreamCredentials, useUpstreamRegistry } from '../fixtures/upstreamRegistry';
import { sha256 } from '../fixtures/blobs';

// Pull-through of manifests and tags, as separate processes (build-index, an origin, a proxy)
// in front of the real CNCF registry with htpasswd auth. `hub/…` routes to a `registry`
// backend with stripPrefix `hub/`: a tag Shoal lacks is fetched from the upstream, verified,
// stored on the origin and served; once pulled, it is served from Shoal with the upstream
// gone. The upstream is a private instance (its own port and directory) so stopping it here
// disturbs no other test.
const skopeo = '/usr/bin/skopeo';
const upstreamPort = checkoutPort(11);
const { username, password } = upstreamCredentials;

type OciErrorBody = { errors: Array<{ code: string; message: string }> };

describe('pull-through of manifests and tags (separate processes, real upstream registry)', () => {
  let dir: ReturnType<typeof tempDir>;
  let upstream: UpstreamRegistry | undefined;
  let upstreamStopped = false;
  let image: GeneratedImage;
  let buildIndexUrl: string;
  let proxy: Service;
  let host: string;
  const services: Service[] = [];
  let common: string;

  const start = async (role: string, name: string, config: string, ready: RegExp) => {
    const file = join(dir.path, `${name}.yml`);
    writeFileSync(file, config);
    const service = await startService([role, '--config', file], ready, {
      SHOAL_LOG_LEVEL: 'info',
    });
    services.push(service);
    return service;
  };

  const startProxy = async (name: string) => {
    proxy = await start(
      'proxy',
      name,
      `${common}origins: { replicas: 1 }\nbuildIndex: { url: ${JSON.stringify(buildIndexUrl)} }\n`,
      /proxy listening on (http:\/\/\S+)/,
    );
    host = proxy.url.replace(/^http:\/\//, '');
  };

  beforeAll(async () => {
    if (!existsSync(skopeo))
      throw new Error(`missing ${skopeo}: run test/services/tools.sh install`);
    dir = tempDir('shoal-pull-through-');
    upstream = useUpstreamRegistry('basic', {
      port: upstreamPort,
      dir: join(dir.path, 'upstream'),
    });
    image = await generateImage({
      dir: join(dir.path, 'image'),
      layers: 2,
      layerSize: 200_000,
      platforms: ['linux/amd64', 'linux/arm64'],
    });
    run(skopeo, [
      '--insecure-policy',
      'copy',
      '--all',
      '--preserve-digests',
      '--dest-tls-verify=false',
      `--dest-creds=${username}:${password}`,
      image.layoutRef,
      `docker://${upstream.host}/library/app:v1`,
    ]);

    const data = join(dir.path, 'data');
    common = `dataDir: ${JSON.stringify(data)}\nlisten: { host: 127.0.0.1, port: 0 }\n`;
    const buildIndex = await start(
      'build-index',
      'build-index',
      common,
      /build-index listening on (http:\/\/\S+)/,
    );
    buildIndexUrl = buildIndex.url;
    const hub =
      `{ type: registry, name: hub, registry: { url: ${JSON.stringify(upstream.url)}, ` +
      `username: ${username}, password: ${password}, stripPrefix: "hub/", maxAttempts: 2, ` +
      'timeoutMs: 5000 } }';
    await start(
      'origin',
      'origin',
      `${common}id: a\nreplicas: 1\nbackends:\n  - namespace: "hub/.*"\n    backend: ${hub}\n`,
      /origin a listening on (http:\/\/\S+)/,
    );
    await startProxy('proxy');
  }, 180_000);

  afterAll(async () => {
    for (const service of services.reverse()) await service.stop();
    if (!upstreamStopped) upstream?.stop();
    dir?.cleanup();
  });

  const pull = (reference: string, to: string) => {
    const layout = join(dir.path, to);
    run(skopeo, [
      '--insecure-policy',
      'copy',
      '--all',
      '--preserve-digests',
      '--src-tls-verify=false',
      `docker://${host}/${reference}`,
      `oci:${layout}:v1`,
    ]);
    return layout;
  };

  /** The pulled layout holds the upstream's index and every manifest, config and layer. */
  const expectImage = (layout: string) => {
    const index = JSON.parse(readFileSync(join(layout, 'index.json'), 'utf8'));
    expect(index.manifests[0].digest).toBe(image.top.digest);
    for (const m of image.manifests) {
      for (const blob of [m.manifest, m.config, ...m.layers]) {
        const bytes = readFileSync(join(layout, 'blobs', 'sha256', blob.digest.slice(7)));
        expect(sha256(bytes)).toBe(blob.digest);
      }
    }
  };

  it('pulls a multi-platform tag through with the upstream digests and records the tag', () => {
    const upstreamRaw = run(skopeo, [
      'inspect',
      '--raw',
      '--tls-verify=false',
      `--creds=${username}:${password}`,
      `docker://${upstream?.host}/library/app:v1`,
    ]);
    expect(sha256(upstreamRaw)).toBe(image.top.digest);
    expectImage(pull('hub/library/app:v1', 'pulled-1'));
    const history = shoal([
      'tags',
      'history',
      'hub/library/app:v1',
      '--url',
      buildIndexUrl,
      '--json',
    ]);
    expect(history.status).toBe(0);
    const changes = (JSON.parse(history.stdout) as { history: Array<Record<string, unknown>> })
      .history;
    expect(changes).toEqual([
      expect.objectContaining({ kind: 'pushed', digest: image.top.digest }),
    ]);
  }, 120_000);

  it('answers MANIFEST_UNKNOWN (404) for a tag the upstream does not have', async () => {
    const res = await fetch(`${proxy.url}/v2/hub/library/app/manifests/no-such-tag`);
    expect(res.status).toBe(404);
    expect(((await res.json()) as OciErrorBody).errors[0]?.code).toBe('MANIFEST_UNKNOWN');
  });

  it('refuses pushes to the pull-through namespace with UNSUPPORTED', async () => {
    const pushed = spawnSync(
      skopeo,
      [
        '--insecure-policy',
        'copy',
        '--dest-tls-verify=false',
        image.layoutRef,
        `docker://${host}/hub/x:v1`,
      ],
      { encoding: 'utf8', timeout: 120_000 },
    );
    expect(pushed.status).not.toBe(0);
    expect(pushed.stderr).toMatch(/unsupported/i);
    const res = await fetch(`${proxy.url}/v2/hub/x/blobs/uploads/`, { method: 'POST' });
    expect(res.status).toBe(405);
    expect(((await res.json()) as OciErrorBody).errors[0]?.code).toBe('UNSUPPORTED');
  }, 120_000);

  it('serves what it pulled from its origins once the upstream is gone', async () => {
    upstream?.stop();
    upstreamStopped = true;
    // A fresh proxy (no manifest cache): manifests and layers come from the origin's disk.
    await proxy.stop();
    await startProxy('proxy-2');
    expectImage(pull('hub/library/app:v1', 'pulled-2'));
    expectImage(pull(`hub/library/app@${image.top.digest}`, 'pulled-3'));
    // What Shoal lacks cannot be had now: 503, not "unknown".
    const res = await fetch(`${proxy.url}/v2/hub/library/app/manifests/v2`);
    expect(res.status).toBe(503);
    expect(((await res.json()) as OciErrorBody).errors[0]?.code).toBe('UNAVAILABLE');
  }, 120_000);
});

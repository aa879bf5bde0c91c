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
// gone. A tag moved upstream is seen once the proxy's recheck time (3 s here) has passed.
// The upstream is a private instance (its own port and directory) so stopping it here
// disturbs no other test.
const skopeo = '/usr/bin/skopeo';
const upstreamPort = checkoutPort(11);
const { username, password } = upstreamCredentials;
/** The proxies' pullThrough.tagRecheckSeconds: short, so a spec can wait past it. */
const recheckSeconds = 3;

type OciErrorBody = { errors: Array<{ code: string; message: string }> };

describe('pull-through of manifests and tags (separate processes, real upstream registry)', () => {
  let dir: ReturnType<typeof tempDir>;
  let upstream: UpstreamRegistry | undefined;
  let upstreamStopped = false;
  let image: GeneratedImage;
  /** Pushed upstream as library/moving:next; library/moving:v1 is moved to it by a test. */
  let next: GeneratedImage;
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
      `${common}origins: { replicas: 1 }\nbuildIndex: { url: ${JSON.stringify(buildIndexUrl)} }\n` +
        `pullThrough: { tagRecheckSeconds: ${recheckSeconds} }\n`,
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
    next = await generateImage({ dir: join(dir.path, 'next'), layers: 1, layerSize: 50_000 });
    for (const [from, to] of [
      [image, 'library/app:v1'],
      [image, 'library/moving:v1'],
      [next, 'library/moving:next'],
    ] as const) {
      run(skopeo, [
        '--insecure-policy',
        'copy',
        '--all',
        '--preserve-digests',
        '--dest-tls-verify=false',
        `--dest-creds=${username}:${password}`,
        from.layoutRef,
        `docker://${upstream.host}/${to}`,
      ]);
    }

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

  /** A tag's history, as `shoal tags history` prints it. */
  const historyOf = (reference: string) => {
    const history = shoal(['tags', 'history', reference, '--url', buildIndexUrl, '--json']);
    expect(history.status).toBe(0);
    return (JSON.parse(history.stdout) as { history: Array<Record<string, unknown>> }).history;
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
    const changes = historyOf('hub/library/app:v1');
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

  /** The manifest digest a real client gets for `reference` through Shoal. */
  const inspect = (reference: string) =>
    sha256(
      run(skopeo, ['inspect', '--raw', '--tls-verify=false', `docker://${host}/${reference}`]),
    );
  /** The proxy's rechecks so far, by result (shoal_proxy_tag_rechecks_total). */
  const rechecks = async (): Promise<Record<string, number>> => {
    const text = await (await fetch(`${proxy.url}/metrics`)).text();
    const counts: Record<string, number> = {};
    for (const m of text.matchAll(/^shoal_proxy_tag_rechecks_total\{([^}]*)\} (\S+)$/gm)) {
      const result = /result="([^"]+)"/.exec(m[1] as string)?.[1] as string;
      counts[result] = (counts[result] ?? 0) + Number(m[2]);
    }
    return counts;
  };

  it('moves a tag moved upstream once the recheck time has passed, not before', async () => {
    expect(inspect('hub/library/moving:v1')).toBe(image.top.digest);
    const checked = Date.now();
    // The upstream's tag moves (a manifest PUT, as any client moving a tag sends).
    const manifest = readFileSync(join(next.dir, 'blobs', 'sha256', next.top.digest.slice(7)));
    const moved = await fetch(`${upstream?.url}/v2/library/moving/manifests/v1`, {
      method: 'PUT',
      headers: {
        authorization: `Basic ${Buffer.from(`${username}:${password}`).toString('base64')}`,
        'content-type': next.top.mediaType,
      },
      body: manifest,
    });
    expect(moved.status).toBe(201);
    // Within the recheck time: Shoal's tag, not asked upstream.
    const before = await rechecks();
    const cached = await fetch(`${proxy.url}/v2/hub/library/moving/manifests/v1`, {
      method: 'HEAD',
    });
    expect(Date.now() - checked).toBeLessThan(recheckSeconds * 1000);
    expect(cached.headers.get('docker-content-digest')).toBe(image.top.digest);
    expect(await rechecks()).toEqual(before);
    // Past it: the move is seen, pulled through, and recorded in the tag's history.
    await new Promise((resolve) =>
      setTimeout(resolve, checked + recheckSeconds * 1000 + 200 - Date.now()),
    );
    expect(inspect('hub/library/moving:v1')).toBe(next.top.digest);
    expect((await rechecks())['moved']).toBe((before['moved'] ?? 0) + 1);
    const changes = historyOf('hub/library/moving:v1');
    expect(changes.map((c) => c['digest'])).toEqual([image.top.digest, next.top.digest]);
  }, 120_000);

  it('never rechecks a pull by digest', async () => {
    const before = await rechecks();
    expect(inspect(`hub/library/moving@${image.top.digest}`)).toBe(image.top.digest);
    expectImage(pull(`hub/library/app@${image.top.digest}`, 'pulled-digest'));
    expect(await rechecks()).toEqual(before);
  }, 120_000);

  it('serves what it pulled from its origins once the upstream is gone', async () => {
    upstream?.stop();
    upstreamStopped = true;
    // A fresh proxy (no manifest cache): manifests and layers come from the origin's disk.
    // It has not checked its tags yet: the first pull asks the upstream, which is down, and
    // is answered the last known digest.
    await proxy.stop();
    await startProxy('proxy-2');
    expectImage(pull('hub/library/app:v1', 'pulled-2'));
    expect((await rechecks())['failed']).toBeGreaterThanOrEqual(1);
    expect(inspect('hub/library/moving:v1')).toBe(next.top.digest);
    expectImage(pull(`hub/library/app@${image.top.digest}`, 'pulled-3'));
    // What Shoal lacks cannot be had now: 503, not "unknown".
    const res = await fetch(`${proxy.url}/v2/hub/library/app/manifests/v2`);
    expect(res.status).toBe(503);
    expect(((await res.json()) as OciErrorBody).errors[0]?.code).toBe('UNAVAILABLE');
  }, 120_000);
});

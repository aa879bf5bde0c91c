import { randomBytes } from 'node:crypto';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Service } from '../fixtures/cli';
import { startService, stopChild, tempDir } from '../fixtures/cli';
import { runTool as run, until } from '../fixtures/processes';
import type { GeneratedImage } from '../fixtures/images';
import { generateImage } from '../fixtures/images';
import { sha256 } from '../fixtures/blobs';
import { serviceFetch } from '../fixtures/security';

// The roles as separate processes on one host, as `shoal proxy`, `shoal origin` and
// `shoal build-index` run them from YAML files: a build-index, two origins (R = 2) and a
// proxy sharing one data directory, hence one SQLite log (several processes may append to
// it) and one projection store. skopeo pushes and pulls through the proxy; then an origin
// is killed with SIGKILL and the image is still pulled whole from the other.
const skopeo = '/usr/bin/skopeo';

/** Every blob an image's tag needs: its manifests, configs and layers. */
const blobsOf = (image: GeneratedImage) => [
  ...new Set([
    image.top.digest,
    ...image.manifests.flatMap((m) => [m.manifest.digest, m.config.digest]),
    ...image.manifests.flatMap((m) => m.layers.map((l) => l.digest)),
  ]),
];

/** Whether an origin holds a blob on its own disk (no fetching from elsewhere). */
const holds = async (origin: string, digest: string): Promise<boolean> =>
  (await serviceFetch(`${origin}/internal/blobs/${digest}?local=1`, { method: 'HEAD' })).status ===
  200;

const kill9 = (service: Service): Promise<void> => stopChild(service.child, 'SIGKILL');

describe('proxy, two origins and build-index as four processes on one host', () => {
  let dir: ReturnType<typeof tempDir>;
  const services: Service[] = [];
  let origins: Record<'a' | 'b', Service>;
  let proxy: Service;
  let host: string;

  /** Writes a role's YAML file and starts `shoal <role> --config <file>`. */
  const start = async (role: string, name: string, config: string, ready: RegExp) => {
    const file = join(dir.path, `${name}.yml`);
    writeFileSync(file, config);
    const service = await startService([role, '--config', file], ready, {
      SHOAL_LOG_LEVEL: 'warn',
    });
    services.push(service);
    return service;
  };

  beforeAll(async () => {
    if (!existsSync(skopeo)) {
      throw new Error(`missing ${skopeo}: run \`test/services/tools.sh install\``);
    }
    dir = tempDir('shoal-four-process-');
    const data = join(dir.path, 'data');
    const common = `dataDir: ${JSON.stringify(data)}\nlisten: { host: 127.0.0.1, port: 0 }\n`;
    // One at a time: the first creates the data directory the others then open.
    const buildIndex = await start(
      'build-index',
      'build-index',
      common,
      /build-index listening on (http:\/\/\S+)/,
    );
    const origin = (id: string) =>
      start(
        'origin',
        `origin-${id}`,
        `${common}id: ${id}\nreplicas: 2\n`,
        new RegExp(`origin ${id} listening on (http://\\S+)`),
      );
    origins = { a: await origin('a'), b: await origin('b') };
    proxy = await start(
      'proxy',
      'proxy',
      `${common}origins: { replicas: 2 }\nbuildIndex: { url: ${JSON.stringify(buildIndex.url)} }\n`,
      /proxy listening on (http:\/\/\S+)/,
    );
    host = proxy.url.replace(/^http:\/\//, '');
  }, 120_000);

  afterAll(async () => {
    for (const service of services.reverse()) await service.stop();
    dir?.cleanup();
  });

  it('pushes via the proxy, keeps each blob on both origins, survives one dying', async () => {
    const image = await generateImage({
      dir: join(dir.path, 'image'),
      layers: 3,
      layerSize: 512 * 1024,
    });
    const repo = `e2e/four-${randomBytes(4).toString('hex')}`;
    run(skopeo, [
      '--insecure-policy',
      'copy',
      '--preserve-digests',
      '--dest-tls-verify=false',
      image.layoutRef,
      `docker://${host}/${repo}:v1`,
    ]);

    // R = 2 with two origins: each holds every blob, the one that took it and the replica.
    const digests = blobsOf(image);
    for (const digest of digests) {
      for (const [id, origin] of Object.entries(origins)) {
        await until(() => holds(origin.url, digest), 30_000, `${digest} on origin ${id}`, 100);
      }
    }

    const pull = (into: string) => {
      const out = join(dir.path, into);
      run(skopeo, [
        '--insecure-policy',
        'copy',
        '--preserve-digests',
        '--src-tls-verify=false',
        `docker://${host}/${repo}:v1`,
        `oci:${out}:v1`,
      ]);
      const index = JSON.parse(readFileSync(join(out, 'index.json'), 'utf8'));
      expect(index.manifests[0].digest).toBe(image.top.digest);
      for (const digest of digests) {
        const bytes = readFileSync(join(out, 'blobs', 'sha256', digest.slice('sha256:'.length)));
        expect(sha256(bytes)).toBe(digest);
      }
    };
    pull('pulled');

    // One origin dies the hard way; the other still serves the whole image.
    await kill9(origins.a);
    expect(await holds(origins.b.url, image.top.digest)).toBe(true);
    pull('pulled-after-kill');
  }, 180_000);
});

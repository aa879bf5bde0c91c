import { randomBytes } from 'node:crypto';
import { existsSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import type { Service } from '../fixtures/cli';
import { configuredServices, shoal, tempDir } from '../fixtures/cli';
import { checkoutPort, runTool as run, until } from '../fixtures/processes';
import { generateImage } from '../fixtures/images';
import type { S3Server } from '../fixtures/s3Server';
import { s3Keys as keys, startS3Server } from '../fixtures/s3Server';

// GC and watermarks against a real S3 server (versitygw), as separate processes: two origins
// with R = 2 drop their copies of what GC collected and one erases the bucket's objects; an
// origin over its high watermark evicts only blobs already written back, never one whose
// write-back is pending while S3 is down.
const skopeo = '/usr/bin/skopeo';
const s3Port = checkoutPort(13);
type LogEvent = { type: string; data: { digest?: string; backend?: string } };
const logEvents = (dataDir: string): LogEvent[] => {
  const out = shoal(['log', 'tail', '--from', '1', '--json', '--data-dir', dataDir]);
  if (out.status !== 0) throw new Error(`shoal log tail failed: ${out.stderr}`);
  return out.stdout
    .split('\n')
    .filter(Boolean)
    .map((line) => JSON.parse(line) as LogEvent);
};
const persistedIn = (dataDir: string, backend: string): Set<string> =>
  new Set(
    logEvents(dataDir)
      .filter((e) => e.type === 'BlobPersisted' && e.data.backend === backend)
      .map((e) => e.data.digest ?? ''),
  );

/** Hex names of the blob files under an origin's directory. */
const blobFiles = (root: string): Set<string> => {
  const out = new Set<string>();
  const walk = (dir: string) => {
    for (const entry of readdirSync(dir, { withFileTypes: true })) {
      if (entry.isDirectory()) walk(join(dir, entry.name));
      else if (/^[0-9a-f]{64}$/.test(entry.name)) out.add(entry.name);
    }
  };
  if (existsSync(root)) walk(root);
  return out;
};
const hexOf = (digest: string) => digest.slice('sha256:'.length);

describe('GC and watermarks with two origins on S3 (separate processes, versitygw)', () => {
  let dir: ReturnType<typeof tempDir>;
  let data: string;
  let s3: S3Server | undefined;
  let bucket: string;
  const origins: Record<string, Service> = {};
  let host: string;

  let start: ReturnType<typeof configuredServices>['start'];
  let stopAll = async () => {};

  const keysIn = () => (s3 as S3Server).keys();
  const objectOf = (digest: string) =>
    `shoal/blobs/sha256/${hexOf(digest).slice(0, 2)}/${hexOf(digest)}`;
  const originDir = (id: string) => join(data, `origin-${id}`);

  beforeAll(async () => {
    if (!existsSync(skopeo))
      throw new Error(`missing ${skopeo}: run test/services/tools.sh install`);
    dir = tempDir('shoal-gc-backends-');
    data = join(dir.path, 'data');
    ({ start, stopAll } = configuredServices(dir.path));
    bucket = `gc-${randomBytes(4).toString('hex')}`;
    s3 = await startS3Server({ port: s3Port, toolsDir: join(dir.path, 's3'), bucket });
    const { endpoint } = s3;
    const backend =
      `{ type: s3, name: team-s3, prefix: shoal/, s3: { endpoint: "${endpoint}", ` +
      `bucket: ${bucket}, forcePathStyle: true, accessKeyId: ${keys.accessKeyId}, ` +
      `secretAccessKey: ${keys.secretAccessKey}, maxAttempts: 2, timeoutMs: 5000 } }`;
    const common = `dataDir: ${JSON.stringify(data)}\nlisten: { host: 127.0.0.1, port: 0 }\n`;
    const buildIndex = await start(
      'build-index',
      'build-index',
      common,
      /build-index listening on (http:\/\/\S+)/,
    );
    for (const id of ['a', 'b']) {
      origins[id] = await start(
        'origin',
        `origin-${id}`,
        `${common}id: ${id}\nreplicas: 2\n` +
          'writeBack: { quietMs: 0, minBackoffMs: 200, maxBackoffMs: 1000 }\n' +
          // Over 1 MiB of blobs, evict down to 600 KiB, checked every 200 ms.
          'cache: { highWatermark: 1MiB, lowWatermark: 600KiB, checkIntervalMs: 200 }\n' +
          `backends:\n  - namespace: "team-s3/.*"\n    backend: ${backend}\n`,
        new RegExp(`origin ${id} listening on (http://\\S+)`),
      );
    }
    const proxy = await start(
      'proxy',
      'proxy',
      `${common}origins: { replicas: 2 }\nbuildIndex: { url: ${JSON.stringify(buildIndex.url)} }\n`,
      /proxy listening on (http:\/\/\S+)/,
    );
    host = proxy.url.replace(/^http:\/\//, '');
  }, 180_000);

  afterAll(async () => {
    await stopAll();
    s3?.close();
    dir?.cleanup();
  });

  const push = async (repo: string, name: string, layers: number, layerSize: number) => {
    const image = await generateImage({
      dir: join(dir.path, name),
      layers,
      layerSize,
      gzipLevel: 0,
    });
    run(skopeo, [
      '--insecure-policy',
      'copy',
      '--preserve-digests',
      '--dest-tls-verify=false',
      image.layoutRef,
      `docker://${host}/${repo}:v1`,
    ]);
    const manifest = image.manifests[0];
    if (manifest === undefined) throw new Error('image without a manifest');
    return {
      manifest: manifest.manifest.digest,
      blobs: [manifest.config.digest, ...manifest.layers.map((l) => l.digest)],
    };
  };

  it('a GC run deletes the bucket objects and both origins copies of what it collected', async () => {
    const image = await push('team-s3/gone', 'gone', 2, 150_000);
    const all = [...image.blobs, image.manifest];
    await until(
      async () => {
        const done = persistedIn(data, 'team-s3');
        return all.every((d) => done.has(d));
      },
      60_000,
      'write-back of the push',
      200,
    );
    const before = await keysIn();
    for (const digest of all) expect(before).toContain(objectOf(digest));
    await until(
      () =>
        ['a', 'b'].every((id) => image.blobs.every((d) => blobFiles(originDir(id)).has(hexOf(d)))),
      30_000,
      'a copy on each of the two owners (R = 2)',
      200,
    );

    const untag = await fetch(`http://${host}/v2/team-s3/gone/manifests/v1`, { method: 'DELETE' });
    expect(untag.status).toBe(202);
    const gc = shoal(['gc', 'run', '--grace', '0s', '--json', '--data-dir', data]);
    expect(gc.status).toBe(0);
    const report = JSON.parse(gc.stdout) as { items: { blobs: Array<{ digest: string }> } };
    expect(report.items.blobs.map((b) => b.digest).sort()).toEqual([...all].sort());

    await until(
      async () => {
        const left = await keysIn();
        return all.every((d) => !left.includes(objectOf(d)));
      },
      30_000,
      'the objects gone from the bucket',
      200,
    );
    await until(
      () => ['a', 'b'].every((id) => all.every((d) => !blobFiles(originDir(id)).has(hexOf(d)))),
      30_000,
      'the copies gone from both origins',
      200,
    );
    // One origin erased, and said so on the log.
    expect(logEvents(data).filter((e) => e.type === 'BlobErased')).toHaveLength(all.length);
  }, 180_000);

  it('evicts above the high watermark only what S3 holds: never a pending write-back', async () => {
    s3?.stop();
    let image: Awaited<ReturnType<typeof push>>;
    try {
      // 3 × 500 KB: over the 1 MiB high watermark, and nothing of it written back.
      image = await push('team-s3/cached', 'cached', 3, 500_000);
      // The signal: the evictor found itself above its low watermark with nothing evictable.
      await until(
        () => /cache still above its low watermark/.test(origins.a?.output() ?? ''),
        30_000,
        'an eviction check with the write-back pending',
        100,
      );
      const done = persistedIn(data, 'team-s3');
      expect(image.blobs.filter((d) => done.has(d))).toEqual([]);
      for (const id of ['a', 'b']) {
        const files = blobFiles(originDir(id));
        for (const digest of image.blobs) expect(files.has(hexOf(digest))).toBe(true);
      }
    } finally {
      s3?.start();
    }
    await until(
      async () => {
        const done = persistedIn(data, 'team-s3');
        return image.blobs.every((d) => done.has(d));
      },
      60_000,
      'write-back after S3 returned',
      200,
    );
    // Written back, the cache goes down to its low watermark: some layer leaves the disk.
    await until(
      () => image.blobs.some((d) => !blobFiles(originDir('a')).has(hexOf(d))),
      30_000,
      'an eviction on origin a',
      200,
    );
    const metrics = await (await fetch(`${origins.a?.url}/metrics`)).text();
    const evictions = /^shoal_origin_evictions_total(?:\{[^}]*\})? (\d+)/m.exec(metrics);
    expect(evictions === null ? metrics.split('\n').filter((l) => /evict/.test(l)) : 'ok').toBe(
      'ok',
    );
    expect(Number(evictions?.[1])).toBeGreaterThan(0);
    // Evictions are not events: the log has none, and the image is still whole (from S3).
    expect(logEvents(data).some((e) => /Evict/.test(e.type))).toBe(false);
    run(skopeo, [
      '--insecure-policy',
      'copy',
      '--src-tls-verify=false',
      `docker://${host}/team-s3/cached:v1`,
      `oci:${join(dir.path, 'pulled-cached')}:v1`,
    ]);
  }, 180_000);
});

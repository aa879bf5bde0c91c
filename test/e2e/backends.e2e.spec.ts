import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { CreateBucketCommand, ListObjectsV2Command, S3Client } from '@aws-sdk/client-s3';
import { Storage } from '@google-cloud/storage';
import type { Service } from '../fixtures/cli';
import { shoal, startService, tempDir } from '../fixtures/cli';
import { checkoutPort, runTool as run, until } from '../fixtures/processes';
import { generateImage } from '../fixtures/images';

// Backends routed by namespace, as separate processes (build-index, an origin, a proxy) with
// real servers on ports of their own (so stopping one here disturbs no other test): versitygw
// for S3, fake-gcs-server, nginx with WebDAV for the http backend: pushes land in the backend their repository
// names; the S3 server going away during write-back loses nothing; a backend that refuses the
// configured credentials makes the origin not ready, with the cause in its log and /health.
const skopeo = '/usr/bin/skopeo';
const s3Port = checkoutPort(1);
const keys = { accessKeyId: 'shoal-test', secretAccessKey: 'shoal-test-secret' };

const gcsPort = checkoutPort(3);
const httpPort = checkoutPort(5);

/** Runs a server script against a private instance (its own port and directory). */
const script = (name: string, command: string, env: Record<string, string>): string =>
  execFileSync('bash', [join(__dirname, '../services', name), command], {
    encoding: 'utf8',
    env: { ...process.env, ...env },
    stdio: ['ignore', 'pipe', 'inherit'],
  });

const s3 = (command: 'start' | 'stop', toolsDir: string): string =>
  script('s3.sh', command, { S3_PORT: String(s3Port), S3_TOOLS_DIR: toolsDir });

/** The log's BlobPersisted events, as `digest → backends`. */
const persisted = (dataDir: string): Map<string, Set<string>> => {
  const out = shoal(['log', 'tail', '--from', '1', '--json', '--data-dir', dataDir]);
  if (out.status !== 0) throw new Error(`shoal log tail failed: ${out.stderr}`);
  const map = new Map<string, Set<string>>();
  for (const line of out.stdout.split('\n').filter(Boolean)) {
    const event = JSON.parse(line) as { type: string; data: { digest: string; backend: string } };
    if (event.type !== 'BlobPersisted') continue;
    const set = map.get(event.data.digest) ?? new Set<string>();
    set.add(event.data.backend);
    map.set(event.data.digest, set);
  }
  return map;
};

describe('storage backends routed by namespace (separate processes, real S3 server)', () => {
  let dir: ReturnType<typeof tempDir>;
  let data: string;
  let toolsDir: string;
  let client: S3Client;
  let bucket: string;
  const services: Service[] = [];
  let host: string;
  let gcs: Storage;
  let gcsEnv: Record<string, string> | undefined;
  let httpEnv: Record<string, string> | undefined;
  let httpBase: string;
  let routes: string;

  const start = async (role: string, name: string, config: string, ready: RegExp) => {
    const file = join(dir.path, `${name}.yml`);
    writeFileSync(file, config);
    const service = await startService([role, '--config', file], ready, {
      SHOAL_LOG_LEVEL: 'info',
    });
    services.push(service);
    return service;
  };

  const s3Backend = (secret: string) =>
    `{ type: s3, name: team-s3, prefix: shoal/, s3: { endpoint: "http://127.0.0.1:${s3Port}", ` +
    `bucket: ${bucket}, forcePathStyle: true, accessKeyId: ${keys.accessKeyId}, ` +
    `secretAccessKey: ${secret}, maxAttempts: 2, timeoutMs: 5000 } }`;

  const keysIn = async (): Promise<string[]> => {
    const listed = await client.send(new ListObjectsV2Command({ Bucket: bucket }));
    return (listed.Contents ?? []).map((o) => o.Key as string);
  };

  beforeAll(async () => {
    if (!existsSync(skopeo))
      throw new Error(`missing ${skopeo}: run test/services/tools.sh install`);
    dir = tempDir('shoal-backends-');
    data = join(dir.path, 'data');
    toolsDir = join(dir.path, 's3');
    const endpoint = (/^S3_ENDPOINT=(\S+)$/m.exec(s3('start', toolsDir)) ?? [])[1];
    client = new S3Client({
      endpoint,
      region: 'us-east-1',
      forcePathStyle: true,
      credentials: keys,
      maxAttempts: 1,
    });
    bucket = `routes-${randomBytes(4).toString('hex')}`;
    await client.send(new CreateBucketCommand({ Bucket: bucket }));
    gcsEnv = { GCS_PORT: String(gcsPort), GCS_TOOLS_DIR: join(dir.path, 'gcs') };
    httpEnv = { HTTP_PORT: String(httpPort), HTTP_TOOLS_DIR: join(dir.path, 'http') };
    const gcsEndpoint = (/^GCS_ENDPOINT=(\S+)$/m.exec(script('gcs.sh', 'start', gcsEnv)) ?? [])[1];
    const httpUrl = (/^HTTP_BACKEND_URL=(\S+)$/m.exec(script('http.sh', 'start', httpEnv)) ??
      [])[1];
    gcs = new Storage({ apiEndpoint: gcsEndpoint, projectId: 'e2e' });
    await gcs.createBucket(bucket);
    httpBase = `${(httpUrl ?? '').replace(/\/+$/, '')}/store/`;
    const gcsBackend =
      `{ type: gcs, name: team-gcs, gcs: { endpoint: "${gcsEndpoint}", bucket: ${bucket}, ` +
      'projectId: e2e } }';
    const httpBackend = `{ type: http, name: team-http, http: { urlTemplate: "${httpBase}{name}", write: true } }`;
    routes =
      `  - namespace: "team-gcs/.*"\n    backend: ${gcsBackend}\n` +
      `  - namespace: "team-http/.*"\n    backend: ${httpBackend}\n`;
    const common = `dataDir: ${JSON.stringify(data)}\nlisten: { host: 127.0.0.1, port: 0 }\n`;
    const buildIndex = await start(
      'build-index',
      'build-index',
      common,
      /build-index listening on (http:\/\/\S+)/,
    );
    await start(
      'origin',
      'origin',
      `${common}id: a\nreplicas: 1\nwriteBack: { quietMs: 0, minBackoffMs: 200, maxBackoffMs: 1000 }\n` +
        `backends:\n  - namespace: "team-s3/.*"\n    backend: ${s3Backend(keys.secretAccessKey)}\n${routes}`,
      /origin a listening on (http:\/\/\S+)/,
    );
    const proxy = await start(
      'proxy',
      'proxy',
      `${common}origins: { replicas: 1 }\nbuildIndex: { url: ${JSON.stringify(buildIndex.url)} }\n`,
      /proxy listening on (http:\/\/\S+)/,
    );
    host = proxy.url.replace(/^http:\/\//, '');
  }, 180_000);

  afterAll(async () => {
    for (const service of services.reverse()) await service.stop();
    client?.destroy();
    if (toolsDir !== undefined) s3('stop', toolsDir);
    if (gcsEnv !== undefined) script('gcs.sh', 'stop', gcsEnv);
    if (httpEnv !== undefined) script('http.sh', 'stop', httpEnv);
    dir?.cleanup();
  });

  const push = async (repo: string, name: string) => {
    const image = await generateImage({ dir: join(dir.path, name), layers: 2, layerSize: 300_000 });
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
    return [manifest.config.digest, ...manifest.layers.map((l) => l.digest)];
  };

  const objectOf = (digest: string) => {
    const hex = digest.slice('sha256:'.length);
    return `shoal/blobs/sha256/${hex.slice(0, 2)}/${hex}`;
  };

  it('writes each push back to the backend its repository routes to', async () => {
    const teamS3 = await push('team-s3/app', 'a');
    const plain = await push('plain/app', 'b');
    const teamGcs = await push('team-gcs/app', 'g');
    const teamHttp = await push('team-http/app', 'h');
    await until(
      async () => {
        const done = persisted(data);
        return [...teamS3, ...plain, ...teamGcs, ...teamHttp].every((d) => done.has(d));
      },
      60_000,
      'write-back of every push',
      200,
    );
    const done = persisted(data);
    for (const digest of teamS3) expect([...(done.get(digest) ?? [])]).toEqual(['team-s3']);
    for (const digest of plain) expect([...(done.get(digest) ?? [])]).toEqual(['filesystem']);
    for (const digest of teamGcs) expect([...(done.get(digest) ?? [])]).toEqual(['team-gcs']);
    for (const digest of teamHttp) expect([...(done.get(digest) ?? [])]).toEqual(['team-http']);
    const [inGcs] = await gcs.bucket(bucket).getFiles();
    const gcsNames = inGcs.map((f) => f.name);
    for (const digest of teamGcs)
      expect(gcsNames).toContain(objectOf(digest).slice('shoal/'.length));
    for (const digest of plain)
      expect(gcsNames).not.toContain(objectOf(digest).slice('shoal/'.length));
    for (const digest of teamHttp) {
      const head = await fetch(`${httpBase}${objectOf(digest).slice('shoal/'.length)}`, {
        method: 'HEAD',
      });
      expect(head.status).toBe(200);
    }
    const inBucket = await keysIn();
    for (const digest of teamS3) expect(inBucket).toContain(objectOf(digest));
    for (const digest of plain) expect(inBucket).not.toContain(objectOf(digest));
    for (const digest of plain) {
      const hex = digest.slice('sha256:'.length);
      expect(existsSync(join(data, 'backend', 'blobs', 'sha256', hex.slice(0, 2), hex))).toBe(true);
    }
  });

  it('keeps pushes while S3 is down and writes them back once it returns', async () => {
    s3('stop', toolsDir);
    let digests: string[];
    try {
      // The push succeeds: origins hold the blobs; write-back waits for the backend.
      digests = await push('team-s3/while-down', 'c');
      await new Promise((resolve) => setTimeout(resolve, 3000));
      const done = persisted(data);
      expect(digests.filter((d) => done.has(d))).toEqual([]);
      // Pulls are served from the origin meanwhile.
      run(skopeo, [
        '--insecure-policy',
        'copy',
        '--src-tls-verify=false',
        `docker://${host}/team-s3/while-down:v1`,
        `oci:${join(dir.path, 'pulled-while-down')}:v1`,
      ]);
    } finally {
      s3('start', toolsDir);
    }
    await until(
      async () => {
        const done = persisted(data);
        return digests.every((d) => done.get(d)?.has('team-s3'));
      },
      60_000,
      'write-back after S3 returned',
      200,
    );
    const inBucket = await keysIn();
    for (const digest of digests) expect(inBucket).toContain(objectOf(digest));
  });

  it('an origin whose backend refuses its credentials is not ready and says why', async () => {
    const common = `dataDir: ${JSON.stringify(data)}\nlisten: { host: 127.0.0.1, port: 0 }\n`;
    const origin = await start(
      'origin',
      'origin-bad',
      `${common}id: bad\nreplicas: 1\nbackends:\n  - namespace: "team-s3/.*"\n    backend: ${s3Backend('wrong-secret')}\n`,
      /origin bad listening on (http:\/\/\S+)/,
    );
    await until(
      async () => {
        const ready = await fetch(`${origin.url}/health`);
        return ready.status === 503 && /credentials refused/.test(await ready.text());
      },
      20_000,
      'readiness to fail on the refused credentials',
      200,
    );
    // Still serving, and its log names the cause.
    expect((await fetch(`${origin.url}/metrics`)).status).toBe(200);
    expect(origin.output()).toMatch(/storage backend unusable: .*credentials refused/);
  });
});

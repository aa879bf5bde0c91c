import { spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import type { Service } from '../fixtures/cli';
import { startService, tempDir } from '../fixtures/cli';
import { generateImage } from '../fixtures/images';
import { sha256 } from '../fixtures/blobs';
import { runTool } from '../fixtures/processes';

// The OCI registry through `shoal dev`, driven by the clients users use: the conformance
// suite, skopeo, crane and oras. Missing tools fail the suite (never skip it).
const root = resolve(__dirname, '../..');
const tools = {
  conformance: join(root, '.tools/bin/conformance.test'),
  crane: join(root, '.tools/bin/crane'),
  oras: join(root, '.tools/bin/oras'),
  skopeo: '/usr/bin/skopeo',
};

const run = (command: string, args: string[], options: { env?: NodeJS.ProcessEnv } = {}) =>
  runTool(command, args, { cwd: root, ...options });

const fresh = (prefix: string) => `e2e/${prefix}-${randomBytes(4).toString('hex')}`;

type OciErrorBody = { errors: Array<{ code: string; message: string }> };

describe('the OCI registry (shoal dev) with real clients', () => {
  let dir: ReturnType<typeof tempDir>;
  let dev: Service;
  let url: string;
  let host: string;

  beforeAll(async () => {
    const missing = Object.values(tools).filter((path) => !existsSync(path));
    if (missing.length > 0) {
      throw new Error(
        `missing test tools: ${missing.join(', ')}\n` +
          'run `test/services/tools.sh install` (apt: skopeo…; go: crane, oras, conformance)',
      );
    }
    dir = tempDir('shoal-registry-e2e-');
    const base = 20000 + Math.floor(Math.random() * 12000);
    dev = await startService(
      ['dev', '--data-dir', join(dir.path, 'data'), '--port-base', String(base)],
      /\bproxy\s+(http:\/\/\S+)/,
      { SHOAL_LOG_LEVEL: 'warn' },
    );
    url = dev.url;
    host = url.replace(/^http:\/\//, '');
  }, 60_000);

  afterAll(async () => {
    await dev?.stop();
    dir?.cleanup();
  });

  it('writes every endpoint to endpoints.json and answers the ping', async () => {
    const endpoints = JSON.parse(readFileSync(join(dir.path, 'data', 'endpoints.json'), 'utf8'));
    expect(endpoints).toMatchObject({ proxy: url, buildIndex: expect.any(String) });
    expect(Array.isArray(endpoints.origins)).toBe(true);
    const ping = await fetch(`${url}/v2/`);
    expect(ping.status).toBe(200);
    expect(ping.headers.get('docker-distribution-api-version')).toBe('registry/2.0');
  });

  it('passes the OCI distribution-spec conformance suite (all four workflows)', () => {
    const result = spawnSync('bash', [join(root, 'test/services/conformance.sh'), url], {
      encoding: 'utf8',
      cwd: root,
      timeout: 300_000,
      maxBuffer: 64 * 1024 * 1024,
    });
    const output = `${result.stdout}${result.stderr}`;
    const summary = /conformance: (\d+) passed, (\d+) failed, (\d+) skipped/.exec(output);
    if (summary === null) throw new Error(`no conformance summary:\n${output.slice(-4000)}`);
    const [, passed, failed] = summary.map(Number);
    if (failed !== 0) throw new Error(`conformance failures:\n${output.slice(-6000)}`);
    expect(passed).toBeGreaterThanOrEqual(70);
  }, 320_000);

  it('skopeo pushes a multi-platform image and pulls it back with the same digests', async () => {
    const image = await generateImage({
      dir: join(dir.path, 'skopeo-src'),
      layers: 3,
      layerSize: 128 * 1024,
      platforms: ['linux/amd64', 'linux/arm64'],
    });
    const repo = fresh('skopeo');
    const common = ['--insecure-policy', 'copy', '--all', '--preserve-digests'];
    run(tools.skopeo, [
      ...common,
      '--dest-tls-verify=false',
      image.layoutRef,
      `docker://${host}/${repo}:v1`,
    ]);
    const raw = run(tools.skopeo, [
      'inspect',
      '--raw',
      '--tls-verify=false',
      `docker://${host}/${repo}:v1`,
    ]);
    expect(sha256(raw)).toBe(image.top.digest);

    const pulled = join(dir.path, 'skopeo-pulled');
    run(tools.skopeo, [
      ...common,
      '--src-tls-verify=false',
      `docker://${host}/${repo}:v1`,
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
  }, 120_000);

  it('crane pushes, pulls, reads manifests, lists and tags', async () => {
    const image = await generateImage({ dir: join(dir.path, 'crane-src'), layers: 2 });
    const repo = fresh('crane');
    const ref = `${host}/${repo}`;
    const crane = (...args: string[]) => run(tools.crane, [...args, '--insecure']).trim();
    // crane pushes an OCI layout's index; then copies, tags and reads what it pushed.
    crane('push', image.dir, `${ref}:v1`);
    expect(crane('digest', `${ref}:v1`)).toBe(image.top.digest);
    crane('tag', `${ref}:v1`, 'v2');
    crane('cp', `${ref}:v1`, `${ref}-copy:v1`);
    expect(crane('ls', ref).split('\n').sort()).toEqual(['v1', 'v2']);
    expect(crane('digest', `${ref}-copy:v1`)).toBe(image.top.digest);
    const manifest = JSON.parse(crane('manifest', `${ref}:v2`));
    expect(manifest.layers.map((l: { digest: string }) => l.digest)).toEqual(
      image.manifests[0]?.layers.map((l) => l.digest),
    );
    const tarball = join(dir.path, 'crane.tar');
    crane('pull', `${ref}:v1`, tarball);
    crane('push', tarball, `${ref}:from-tarball`);
    expect(crane('ls', ref).split('\n')).toContain('from-tarball');
    expect(crane('catalog', host).split('\n')).toEqual(
      expect.arrayContaining([repo, `${repo}-copy`]),
    );
  }, 120_000);

  it('oras pushes an artifact, attaches a referrer, and discovers it', () => {
    const repo = fresh('oras');
    const ref = `${host}/${repo}:v1`;
    const work = join(dir.path, 'oras');
    run('mkdir', ['-p', work]);
    writeFileSync(
      join(work, 'sbom.json'),
      JSON.stringify({ packages: [randomBytes(8).toString('hex')] }),
    );
    writeFileSync(join(work, 'signature.txt'), randomBytes(32).toString('hex'));
    const oras = (...args: string[]) => spawnSyncIn(work, tools.oras, [...args, '--plain-http']);
    oras(
      'push',
      ref,
      '--artifact-type',
      'application/vnd.shoal.sbom',
      'sbom.json:application/json',
    );
    oras(
      'attach',
      ref,
      '--artifact-type',
      'application/vnd.shoal.signature',
      'signature.txt:text/plain',
    );
    const discovered = JSON.parse(oras('discover', ref, '--format', 'json'));
    const referrers = (discovered.referrers ?? discovered.manifests ?? []) as Array<{
      artifactType: string;
    }>;
    expect(referrers.map((r) => r.artifactType)).toContain('application/vnd.shoal.signature');
    const pulled = join(work, 'pulled');
    run('mkdir', ['-p', pulled]);
    spawnSyncIn(pulled, tools.oras, ['pull', ref, '--plain-http']);
    expect(readFileSync(join(pulled, 'sbom.json'), 'utf8')).toBe(
      readFileSync(join(work, 'sbom.json'), 'utf8'),
    );
  }, 60_000);

  it('moves a tag: the next pull gets the new digest at once', async () => {
    const repo = fresh('move');
    const crane = (...args: string[]) => run(tools.crane, [...args, '--insecure']).trim();
    const first = await generateImage({ dir: join(dir.path, 'move-1'), layers: 1 });
    const second = await generateImage({ dir: join(dir.path, 'move-2'), layers: 1 });
    crane('push', first.dir, `${host}/${repo}:latest`);
    expect(crane('digest', `${host}/${repo}:latest`)).toBe(first.top.digest);
    crane('push', second.dir, `${host}/${repo}:latest`);
    const head = await fetch(`${url}/v2/${repo}/manifests/latest`, {
      method: 'HEAD',
      headers: { accept: 'application/vnd.oci.image.manifest.v1+json' },
    });
    expect(head.headers.get('docker-content-digest')).toBe(second.top.digest);
    expect(crane('digest', `${host}/${repo}:latest`)).toBe(second.top.digest);
  }, 60_000);

  it('refuses bad input with OCI errors, makes nothing visible, and keeps serving', async () => {
    const repo = fresh('bad');
    const errorOf = async (response: Response) =>
      ((await response.json()) as OciErrorBody).errors[0]?.code;

    // A blob whose bytes do not match the digest in the URL.
    const content = randomBytes(1000);
    const claimed = sha256(randomBytes(10));
    const put = await fetch(`${url}/v2/${repo}/blobs/uploads/?digest=${claimed}`, {
      method: 'POST',
      headers: { 'content-type': 'application/octet-stream' },
      body: content,
    });
    expect(put.status).toBe(400);
    expect(await errorOf(put)).toBe('DIGEST_INVALID');
    for (const digest of [claimed, sha256(content)]) {
      expect((await fetch(`${url}/v2/${repo}/blobs/${digest}`, { method: 'HEAD' })).status).toBe(
        404,
      );
    }

    const badName = await fetch(`${url}/v2/Bad_Name/tags/list`);
    expect(badName.status).toBe(400);
    expect(await errorOf(badName)).toBe('NAME_INVALID');

    const huge = Buffer.alloc(5 * 1024 * 1024, 0x20);
    const oversize = await fetch(`${url}/v2/${repo}/manifests/v1`, {
      method: 'PUT',
      headers: { 'content-type': 'application/vnd.oci.image.manifest.v1+json' },
      body: huge,
    });
    expect(oversize.status).toBe(413);
    expect(await errorOf(oversize)).toBe('SIZE_INVALID');

    const dangling = JSON.stringify({
      schemaVersion: 2,
      mediaType: 'application/vnd.oci.image.manifest.v1+json',
      config: { mediaType: 'application/vnd.oci.image.config.v1+json', digest: claimed, size: 10 },
      layers: [],
    });
    const unknownBlob = await fetch(`${url}/v2/${repo}/manifests/v1`, {
      method: 'PUT',
      headers: { 'content-type': 'application/vnd.oci.image.manifest.v1+json' },
      body: dangling,
    });
    expect(unknownBlob.status).toBe(400);
    expect(await errorOf(unknownBlob)).toBe('MANIFEST_BLOB_UNKNOWN');
    expect((await fetch(`${url}/v2/${repo}/manifests/v1`)).status).toBe(404);

    const garbage = await fetch(`${url}/v2/${repo}/manifests/v1`, {
      method: 'PUT',
      headers: { 'content-type': 'application/vnd.oci.image.manifest.v1+json' },
      body: 'blablabla',
    });
    expect(await errorOf(garbage)).toBe('MANIFEST_INVALID');

    const ping = await fetch(`${url}/v2/`);
    expect(ping.status).toBe(200);
  }, 60_000);
});

/** Runs a tool in a directory (oras reads and writes files relative to it). */
const spawnSyncIn = (cwd: string, command: string, args: string[]) => {
  const result = spawnSync(command, args, { encoding: 'utf8', cwd, timeout: 120_000 });
  if (result.status !== 0) {
    throw new Error(
      `${command} ${args.join(' ')} exited ${result.status}:\n${result.stdout}${result.stderr}`,
    );
  }
  return result.stdout;
};

import { createHash, randomBytes } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import type { CliResult, Service } from '../fixtures/cli';
import { shoal, startService, tempDir } from '../fixtures/cli';
import { generateImage } from '../fixtures/images';
import { runTool } from '../fixtures/processes';

// Deletion through `shoal dev`: GC of untagged manifests and unreferenced blobs, retention
// rules, quotas, and the race of a push against GC — with real clients and real processes.
const root = resolve(__dirname, '../..');
const skopeo = '/usr/bin/skopeo';
const crane = join(root, '.tools/bin/crane');

const digestOf = (bytes: Buffer | string) =>
  `sha256:${createHash('sha256').update(bytes).digest('hex')}`;

type Blob = { digest: string; size: number; bytes: Buffer };
const blob = (bytes: Buffer): Blob => ({ digest: digestOf(bytes), size: bytes.length, bytes });

type GcItems = {
  manifests: Array<{ digest: string; reason: string }>;
  blobs: Array<{ digest: string; reason: string }>;
  tags: Array<{ repo: string; tag: string; rule?: string }>;
};
type GcJson = {
  dryRun: boolean;
  removed: { tags: number; manifests: number; blobs: number; bytes: number };
  repositories: Record<string, { blobs: number; bytes: number }>;
  rules: Record<string, { tags: number }>;
  items: GcItems;
};

/**
 * The proxy's projections follow the log: what GC removed is gone from its answers once they
 * reach GC's events. Polls `check` (no fixed sleep) until it returns true or 15 s pass.
 */
const eventually = async (check: () => Promise<boolean>): Promise<boolean> => {
  const deadline = Date.now() + 15_000;
  for (;;) {
    if (await check()) return true;
    if (Date.now() > deadline) return false;
    await new Promise((resolvePromise) => setImmediate(resolvePromise));
    await new Promise((resolvePromise) => setTimeout(resolvePromise, 50));
  }
};

const ok = (result: CliResult, what: string): string => {
  if (result.status !== 0) {
    throw new Error(`${what} exited ${result.status}:\n${result.stdout}\n${result.stderr}`);
  }
  return result.stdout;
};

describe('deletion: GC, retention and quotas (shoal dev)', () => {
  let dir: ReturnType<typeof tempDir>;
  let dev: Service;
  let url: string;
  let host: string;
  let buildIndex: string;
  let dataDir: string;

  const gcRun = async (options: { dryRun?: boolean } = {}): Promise<GcJson> => {
    const response = await fetch(`${buildIndex}/v1/gc/runs`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ graceMs: 0, dryRun: options.dryRun === true }),
    });
    if (response.status !== 200) throw new Error(`gc run: ${response.status}`);
    return (await response.json()) as GcJson;
  };

  /** Pushes a blob the way clients do: HEAD first, upload only when absent. */
  const pushBlob = async (repo: string, b: Blob): Promise<void> => {
    const head = await fetch(`${url}/v2/${repo}/blobs/${b.digest}`, { method: 'HEAD' });
    if (head.status === 200) return;
    const start = await fetch(`${url}/v2/${repo}/blobs/uploads/`, { method: 'POST' });
    if (start.status !== 202) throw new Error(`upload start: ${start.status}`);
    const location = new URL(start.headers.get('location') ?? '', url);
    location.searchParams.set('digest', b.digest);
    const put = await fetch(location, {
      method: 'PUT',
      headers: { 'content-type': 'application/octet-stream' },
      body: b.bytes,
    });
    if (put.status !== 201) throw new Error(`upload put: ${put.status} ${await put.text()}`);
  };

  const manifestOf = (config: Blob, layers: readonly Blob[]) =>
    Buffer.from(
      JSON.stringify({
        schemaVersion: 2,
        mediaType: 'application/vnd.oci.image.manifest.v1+json',
        config: { mediaType: 'application/vnd.oci.image.config.v1+json', ...pick(config) },
        layers: layers.map((l) => ({
          mediaType: 'application/vnd.oci.image.layer.v1.tar',
          ...pick(l),
        })),
      }),
    );
  const pick = (b: Blob) => ({ digest: b.digest, size: b.size });

  /** Pushes an image; resolves with the manifest's digest when the registry acknowledged it. */
  const pushImage = async (
    repo: string,
    tag: string,
    layers: readonly Blob[],
  ): Promise<{ acknowledged: boolean; digest: string; status: number; body: string }> => {
    const config = blob(
      Buffer.from(JSON.stringify({ tag, nonce: randomBytes(8).toString('hex') })),
    );
    for (const b of [...layers, config]) await pushBlob(repo, b);
    const manifest = manifestOf(config, layers);
    const put = await fetch(`${url}/v2/${repo}/manifests/${tag}`, {
      method: 'PUT',
      headers: { 'content-type': 'application/vnd.oci.image.manifest.v1+json' },
      body: manifest,
    });
    return {
      acknowledged: put.status === 201,
      digest: digestOf(manifest),
      status: put.status,
      body: put.status === 201 ? '' : await put.text(),
    };
  };

  /** The manifest and every blob it names, read back whole and checked against its digest. */
  const pullable = async (repo: string, digest: string): Promise<string | undefined> => {
    const response = await fetch(`${url}/v2/${repo}/manifests/${digest}`, {
      headers: { accept: 'application/vnd.oci.image.manifest.v1+json' },
    });
    if (response.status !== 200) return `manifest ${digest}: ${response.status}`;
    const manifest = JSON.parse(await response.text()) as {
      config: { digest: string };
      layers: Array<{ digest: string }>;
    };
    for (const d of [manifest.config.digest, ...manifest.layers.map((l) => l.digest)]) {
      const got = await fetch(`${url}/v2/${repo}/blobs/${d}`);
      if (got.status !== 200) return `blob ${d} of ${digest}: ${got.status}`;
      if (digestOf(Buffer.from(await got.arrayBuffer())) !== d) return `blob ${d}: wrong bytes`;
    }
    return undefined;
  };

  const verifyReplay = () => {
    const result = shoal(['replay', '--verify', '--json', '--data-dir', dataDir]);
    ok(result, 'replay --verify');
    return result.stdout;
  };

  beforeAll(async () => {
    for (const tool of [skopeo, crane]) {
      if (!existsSync(tool)) throw new Error(`missing ${tool}: run test/services/tools.sh install`);
    }
    dir = tempDir('shoal-gc-e2e-');
    dataDir = join(dir.path, 'data');
    const base = 20000 + Math.floor(Math.random() * 12000);
    dev = await startService(
      ['dev', '--data-dir', dataDir, '--port-base', String(base)],
      /\bproxy\s+(http:\/\/\S+)/,
      { SHOAL_LOG_LEVEL: 'warn' },
    );
    url = dev.url;
    host = url.replace(/^http:\/\//, '');
    const endpoints = JSON.parse(readFileSync(join(dataDir, 'endpoints.json'), 'utf8'));
    buildIndex = (endpoints as { buildIndex: string }).buildIndex;
  }, 60_000);

  afterAll(async () => {
    await dev?.stop();
    dir?.cleanup();
  });

  it('collects an untagged manifest and its own blobs, keeps the tagged one; replay --verify agrees', async () => {
    const repo = `gc/${randomBytes(3).toString('hex')}`;
    const shared = blob(randomBytes(40_000));
    const onlyOld = blob(randomBytes(50_000));
    const old = await pushImage(repo, 'v1', [shared, onlyOld]);
    const current = await pushImage(repo, 'v1', [shared, blob(randomBytes(30_000))]);
    expect(old.acknowledged && current.acknowledged).toBe(true);
    verifyReplay();

    const dry = await gcRun({ dryRun: true });
    expect(dry.items.manifests.map((m) => m.digest)).toContain(old.digest);
    expect(dry.items.blobs.map((b) => b.digest)).toContain(onlyOld.digest);
    expect(dry.items.blobs.map((b) => b.digest)).not.toContain(shared.digest);
    expect(dry.repositories[repo]?.bytes).toBeGreaterThanOrEqual(onlyOld.size);
    expect(await pullable(repo, old.digest)).toBeUndefined(); // a dry run removes nothing

    const run = await gcRun();
    expect(run.items.manifests.map((m) => m.digest)).toContain(old.digest);
    expect(run.items.blobs.map((b) => b.digest)).toContain(onlyOld.digest);
    const status = async (path: string) => (await fetch(`${url}/v2/${repo}/${path}`)).status;
    expect(await eventually(async () => (await status(`manifests/${old.digest}`)) === 404)).toBe(
      true,
    );
    expect(await eventually(async () => (await status(`blobs/${onlyOld.digest}`)) === 404)).toBe(
      true,
    );
    expect(await pullable(repo, current.digest)).toBeUndefined();

    // The CLI's dry run on the data directory prints per repository; nothing is left.
    const text = ok(
      shoal(['gc', 'run', '--dry-run', '--grace', '0s', '--data-dir', dataDir]),
      'gc run',
    );
    expect(text).toMatch(/would remove 0 tags, 0 manifests, 0 blobs/);
    verifyReplay();
  }, 120_000);

  it('retention keeps the last N tags by push time, a move counting as a push', async () => {
    const repo = `keep/${randomBytes(3).toString('hex')}`;
    const pushed: Record<string, string> = {};
    for (const tag of ['t1', 't2', 't3', 't4', 'release-1']) {
      const image = await pushImage(repo, tag, [blob(randomBytes(10_000))]);
      expect(image.acknowledged).toBe(true);
      pushed[tag] = image.digest;
    }
    // t1 moves (re-pushed last): it is now the most recent push.
    const moved = await pushImage(repo, 't1', [blob(randomBytes(10_000))]);
    expect(moved.acknowledged).toBe(true);
    const added = JSON.parse(
      ok(
        shoal([
          'retention',
          'add',
          '--repo',
          repo,
          '--keep-last',
          '2',
          '--protect',
          'release-*',
          '--name',
          'keep-two',
          '--json',
          '--data-dir',
          dataDir,
        ]),
        'retention add',
      ),
    ) as { rule: { id: string } };
    const dry = await gcRun({ dryRun: true });
    expect(dry.items.tags.map((t) => t.tag).sort()).toEqual(['t2', 't3']);
    const run = await gcRun();
    expect(run.items.tags.map((t) => t.tag).sort()).toEqual(['t2', 't3']);
    expect(run.items.tags.every((t) => t.rule === added.rule.id)).toBe(true);
    expect(run.rules[added.rule.id]?.tags).toBe(2);
    const tags = async () =>
      ((await (await fetch(`${url}/v2/${repo}/tags/list`)).json()) as { tags: string[] }).tags
        .sort()
        .join(',');
    expect(await eventually(async () => (await tags()) === 'release-1,t1,t4')).toBe(true);
    expect(await pullable(repo, moved.digest)).toBeUndefined();
    expect(await pullable(repo, pushed['release-1'] ?? '')).toBeUndefined();
    const t2 = `${url}/v2/${repo}/manifests/${pushed.t2}`;
    expect(await eventually(async () => (await fetch(t2)).status === 404)).toBe(true);
    // The rule's events say who removed what: the tag's deletion names the rule.
    const log = ok(shoal(['log', 'tail', '--from', '1', '--json', '--data-dir', dataDir]), 'log');
    expect(log).toContain(added.rule.id);
  }, 120_000);

  it('refuses a push over quota through skopeo with DENIED naming the quota', async () => {
    const namespace = `quota${randomBytes(3).toString('hex')}`;
    ok(shoal(['quota', 'set', namespace, '200KiB', '--data-dir', dataDir]), 'quota set');
    const image = await generateImage({
      dir: join(dir.path, 'quota-src'),
      layers: 3,
      layerSize: 128 * 1024,
      gzipLevel: 0,
    });
    const repo = `${namespace}/app`;
    const result = (() => {
      try {
        runTool(skopeo, [
          '--insecure-policy',
          'copy',
          '--dest-tls-verify=false',
          image.layoutRef,
          `docker://${host}/${repo}:v1`,
        ]);
        return '';
      } catch (error) {
        return String(error);
      }
    })();
    expect(result).toMatch(/denied/i);
    expect(result).toContain(namespace);
    // Nothing half-written: no tag, and usage within the quota.
    expect((await fetch(`${url}/v2/${repo}/manifests/v1`)).status).toBe(404);
    const ls = JSON.parse(ok(shoal(['quota', 'ls', '--json', '--data-dir', dataDir]), 'quota ls'));
    const row = (
      ls as { quotas: Array<{ namespace: string; used: number; bytes: number }> }
    ).quotas.find((q) => q.namespace === namespace);
    expect(row?.bytes).toBe(200 * 1024);
    expect(row?.used).toBeLessThanOrEqual(200 * 1024);
  }, 120_000);

  it('never loses an acknowledged manifest while GC runs against pushes of shared layers', async () => {
    const rounds = 12;
    const repos = ['race/a', 'race/b', 'race/c'];
    const base = blob(randomBytes(64_000));
    const acknowledged: Array<{ repo: string; digest: string }> = [];
    const collected = new Set<string>();
    let refused = 0;
    for (let round = 0; round < rounds; round += 1) {
      // Pushes sharing `base` race GC; then their tags go, so `base` is garbage again for the
      // next round's pushes to race over.
      const [pushes, gc] = await Promise.all([
        Promise.all(
          repos.map((repo) => pushImage(repo, 'latest', [base, blob(randomBytes(8_000))])),
        ),
        gcRun(),
      ]);
      for (const d of gc.items.blobs) collected.add(d.digest);
      for (const [i, push] of pushes.entries()) {
        const repo = repos[i]!;
        if (!push.acknowledged) {
          refused += 1;
          expect(push.body).toMatch(/MANIFEST_BLOB_UNKNOWN|BLOB_UNKNOWN/);
          continue;
        }
        acknowledged.push({ repo, digest: push.digest });
        expect(await pullable(repo, push.digest)).toBeUndefined();
      }
      for (const repo of repos) {
        await fetch(`${url}/v2/${repo}/manifests/latest`, { method: 'DELETE' });
      }
    }
    expect(acknowledged.length + refused).toBe(rounds * repos.length);
    expect(acknowledged.length).toBeGreaterThan(0);
    expect(collected.size).toBeGreaterThan(0);
    verifyReplay();
  }, 300_000);
});

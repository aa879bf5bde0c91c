import type { ChildProcess } from 'node:child_process';
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import type { Service } from '../fixtures/cli';
import { shoal, startService, stopChild, tempDir } from '../fixtures/cli';
import type { GeneratedImage } from '../fixtures/images';
import { generateImage } from '../fixtures/images';
import { sha256 } from '../fixtures/blobs';
import { eventually, runTool } from '../fixtures/processes';
import { skopeoCopyAll } from '../fixtures/skopeo';

// Replication from a Shoal cluster to a registry Shoal does not run: the CNCF distribution
// registry (Debian's docker-registry) on loopback, with deletes enabled. It cannot delete a
// tag (DELETE …/manifests/<tag> answers 400), so the replicator deletes the manifest by digest
// when no other tag uses it, and records the delete as given up when one does. It has no
// referrers API (distribution 2.8 predates OCI 1.1): referrers reach it through the spec's
// fallback, the subject's referrers tag `sha256-<hex>`, which oras discover reads.
const root = resolve(__dirname, '../..');
const tools = {
  crane: join(root, '.tools/bin/crane'),
  skopeo: '/usr/bin/skopeo',
  registry: '/usr/bin/docker-registry',
  oras: join(root, '.tools/bin/oras'),
};

const run = (command: string, args: string[]) => runTool(command, args, { cwd: root }).trim();

type RuleStatus = {
  id: string;
  state: string;
  lag: { positions: number };
  lastPosition: number;
  skipped: number;
  failures: { last?: { error: string; retryAt?: string } };
};

describe('replication to the CNCF registry', () => {
  let dir: ReturnType<typeof tempDir>;
  let a: Service;
  let registry: ChildProcess;
  let aHost: string;
  let buildIndex: string;
  let cncf: string;
  let ruleId: string;
  const images: GeneratedImage[] = [];

  const crane = (...args: string[]) => run(tools.crane, [...args, '--insecure']);
  /**
   * The rule once caught up — with every write up to `position` (when given) replicated: a
   * status read just after a write may not count it yet and call the rule caught up.
   */
  const caughtUp = (position = 0) =>
    eventually(
      'the rule to catch up',
      async () => {
        const response = await fetch(`${buildIndex}/v1/replication/status`);
        const rule = ((await response.json()) as { rules: RuleStatus[] }).rules.find(
          (r) => r.id === ruleId,
        );
        return rule?.state === 'caught-up' &&
          rule.lag.positions === 0 &&
          rule.lastPosition >= position
          ? rule
          : undefined;
      },
      90_000,
    );
  const skopeoPush = (image: GeneratedImage, ref: string) =>
    skopeoCopyAll(image.layoutRef, `docker://${aHost}/${ref}`);
  const tagsAt = (host: string) =>
    crane('ls', `${host}/e2e/cn/app`).split('\n').filter(Boolean).sort();
  const digestAt = (host: string, tag: string) => crane('digest', `${host}/e2e/cn/app:${tag}`);

  beforeAll(async () => {
    for (const path of Object.values(tools)) {
      if (!existsSync(path)) throw new Error(`missing ${path}: run test/services/tools.sh install`);
    }
    dir = tempDir('shoal-replication-cncf-');
    const base = 20000 + Math.floor(Math.random() * 1200) * 10 + 5;
    const registryPort = base + 8;
    cncf = `127.0.0.1:${registryPort}`;
    const config = join(dir.path, 'registry.yml');
    writeFileSync(
      config,
      [
        'version: 0.1',
        'log:',
        '  level: warn',
        'storage:',
        '  filesystem:',
        `    rootdirectory: ${join(dir.path, 'registry')}`,
        '  delete:',
        '    enabled: true',
        'http:',
        `  addr: ${cncf}`,
        '',
      ].join('\n'),
    );
    registry = spawn(tools.registry, ['serve', config], { stdio: 'ignore' });
    await eventually(
      'the CNCF registry',
      async () => ((await fetch(`http://${cncf}/v2/`)).status === 200 ? true : undefined),
      90_000,
    );
    a = await startService(
      ['dev', '--data-dir', join(dir.path, 'a'), '--port-base', String(base), '--cluster', 'a'],
      /\bproxy\s+(http:\/\/\S+)/,
      {},
      60_000,
    );
    aHost = `127.0.0.1:${base}`;
    buildIndex = `http://127.0.0.1:${base + 2}`;
    for (let i = 0; i < 4; i++) {
      images.push(
        await generateImage({
          dir: join(dir.path, `img-${i}`),
          layers: 1,
          layerSize: 2048,
          platforms: i % 2 === 0 ? ['linux/amd64'] : ['linux/amd64', 'linux/arm64'],
        }),
      );
    }
    const added = shoal([
      'rules',
      'add',
      '--name',
      'to-cncf',
      '--repo',
      'e2e/cn/**',
      '--to',
      `http://${cncf}`,
      '--url',
      buildIndex,
      '--json',
    ]);
    expect(added.status).toBe(0);
    ruleId = JSON.parse(added.stdout).rule.id;
  }, 120_000);

  afterAll(async () => {
    await a?.stop();
    if (registry !== undefined) await stopChild(registry);
    dir?.cleanup();
  });

  it('replicates pushes and moves; deletes where it can, keeps what it cannot', async () => {
    const [i0, i1, i2, i3] = images as [
      GeneratedImage,
      GeneratedImage,
      GeneratedImage,
      GeneratedImage,
    ];
    const push = (image: GeneratedImage, tag: string) => skopeoPush(image, `e2e/cn/app:${tag}`);
    push(i0, 'v1');
    push(i1, 'v2');
    push(i3, 'v4');
    push(i2, 'other');
    crane('tag', `${aHost}/e2e/cn/app:v1`, 'v3');
    // v3 moves twice.
    crane('tag', `${aHost}/e2e/cn/app:v2`, 'v3');
    crane('tag', `${aHost}/e2e/cn/app:v4`, 'v3');
    await caughtUp();
    expect(tagsAt(cncf)).toEqual(tagsAt(aHost));
    for (const tag of tagsAt(aHost)) expect(digestAt(cncf, tag)).toBe(digestAt(aHost, tag));
    expect(digestAt(cncf, 'v3')).toBe(i3.top.digest);

    // A pull from the CNCF registry gets every platform, byte for byte.
    const pulled = join(dir.path, 'pulled');
    run(tools.skopeo, [
      '--insecure-policy',
      'copy',
      '--all',
      '--preserve-digests',
      '--src-tls-verify=false',
      `docker://${cncf}/e2e/cn/app:v3`,
      `oci:${pulled}:v3`,
    ]);
    const index = JSON.parse(readFileSync(join(pulled, 'index.json'), 'utf8'));
    expect(index.manifests[0].digest).toBe(i3.top.digest);
    for (const m of i3.manifests) {
      for (const blob of [m.manifest, m.config, ...m.layers]) {
        const bytes = readFileSync(join(pulled, 'blobs', 'sha256', blob.digest.slice(7)));
        expect(sha256(bytes)).toBe(blob.digest);
      }
    }

    // v1's manifest is used by no other tag: deleted (by digest). v4's is also v3's: kept.
    let deleted = 0;
    for (const tag of ['v1', 'v4']) {
      const response = await fetch(`http://${aHost}/v2/e2e/cn/app/manifests/${tag}`, {
        method: 'DELETE',
      });
      expect(response.status).toBe(202);
      deleted = Math.max(deleted, Number(response.headers.get('shoal-position')));
    }
    expect(deleted).toBeGreaterThan(0);
    const rule = await caughtUp(deleted);
    expect(tagsAt(aHost)).toEqual(['other', 'v2', 'v3']);
    expect(tagsAt(cncf)).toEqual(['other', 'v2', 'v3', 'v4']);
    expect(rule.skipped).toBe(1);
    expect(rule.failures.last?.error).toMatch(/v3 still uses/);
    expect(rule.failures.last?.retryAt).toBeUndefined();
  }, 240_000);
  it('carries referrers by the referrers tag, as the registry has no referrers API', async () => {
    const multi = images[1] as GeneratedImage;
    const repo = 'e2e/cn/signed';
    const cwd = join(dir.path, 'oras');
    mkdirSync(cwd, { recursive: true });
    const oras = (...args: string[]) =>
      runTool(tools.oras, [...args, '--plain-http'], { cwd, env: { HOME: cwd } });
    const attach = (artifactType: string, file: string) => {
      writeFileSync(join(cwd, file), randomBytes(64).toString('hex'));
      const out = oras(
        'attach',
        `${aHost}/${repo}:v1`,
        '--artifact-type',
        artifactType,
        `${file}:text/plain`,
      );
      return /Digest: (sha256:[0-9a-f]{64})/.exec(out)?.[1] as string;
    };
    const discover = (host: string) =>
      (
        (JSON.parse(oras('discover', `${host}/${repo}:v1`, '--format', 'json', '--depth', '1'))
          .referrers ?? []) as Array<{ digest: string; artifactType: string }>
      )
        .map((r) => `${r.artifactType} ${r.digest}`)
        .sort();
    expect(
      (await fetch(`http://${cncf}/v2/${repo}/referrers/${images[0]?.top.digest}`)).status,
    ).toBe(404);

    skopeoPush(multi, `${repo}:v1`);
    const sig = attach('application/vnd.e2e.signature', 'sig');
    const sbom = attach('application/spdx+json', 'sbom');
    await caughtUp();
    const index = multi.top.digest;
    expect(crane('digest', `${cncf}/${repo}:v1`)).toBe(index);
    for (const m of multi.manifests) {
      expect(crane('digest', `${cncf}/${repo}@${m.manifest.digest}`)).toBe(m.manifest.digest);
    }
    const both = [`application/spdx+json ${sbom}`, `application/vnd.e2e.signature ${sig}`];
    expect(discover(cncf)).toEqual(both);
    // The fallback tag is an index of the referrers, named after the subject.
    const referrersTag = JSON.parse(crane('manifest', `${cncf}/${repo}:sha256-${index.slice(7)}`));
    expect(referrersTag.manifests.map((m: { digest: string }) => m.digest).sort()).toEqual(
      [sig, sbom].sort(),
    );

    // Attached after the tag was replicated: added to the referrers tag too.
    const late = attach('application/vnd.e2e.attestation', 'late');
    await caughtUp();
    expect(discover(cncf)).toEqual([...both, `application/vnd.e2e.attestation ${late}`].sort());
    expect(discover(cncf)).toEqual(discover(aHost));
  }, 180_000);
});

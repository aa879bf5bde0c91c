import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import type { Service } from '../fixtures/cli';
import { shoal, startService, tempDir } from '../fixtures/cli';
import type { GeneratedImage } from '../fixtures/images';
import { generateImage } from '../fixtures/images';
import { sha256 } from '../fixtures/blobs';
import { eventually, runTool } from '../fixtures/processes';
import { serviceHeaders } from '../fixtures/security';

// Lossless replication between two real Shoal clusters: two `shoal dev` processes, each with
// its own data directory, log and ports, and rules between them. Images are pushed with
// skopeo and crane; every comparison reads both clusters' build-index APIs; every wait is
// on a signal (the replication status says lag 0), bounded.
const root = resolve(__dirname, '../..');
const tools = {
  crane: join(root, '.tools/bin/crane'),
  skopeo: '/usr/bin/skopeo',
  oras: join(root, '.tools/bin/oras'),
};

const run = (command: string, args: string[]) => runTool(command, args, { cwd: root });

type RuleStatus = {
  id: string;
  state: string;
  settled: number;
  lag: { positions: number; seconds: number };
  replicated: number;
  skipped: number;
  failures: { total: number; consecutive: number; last?: { error: string } };
  inFlight?: Array<{ copying?: { digest: string; sent: number; size: number } }>;
};

type LoggedEvent = {
  position: number;
  type: string;
  data: Record<string, unknown>;
  metadata: { actor: string; cluster: string };
};

/** One `shoal dev` cluster on fixed ports, restartable on the same data directory. */
type Cluster = {
  readonly name: string;
  readonly dataDir: string;
  readonly proxy: string;
  readonly host: string;
  readonly buildIndex: string;
  service?: Service;
  start(): Promise<void>;
  stop(): Promise<void>;
  kill9(): Promise<void>;
};

const cluster = (name: string, dataDir: string, portBase: number): Cluster => {
  const c: Cluster = {
    name,
    dataDir,
    proxy: `http://127.0.0.1:${portBase}`,
    host: `127.0.0.1:${portBase}`,
    buildIndex: `http://127.0.0.1:${portBase + 2}`,
    async start() {
      c.service = await startService(
        ['dev', '--data-dir', dataDir, '--port-base', String(portBase), '--cluster', name],
        /\bproxy\s+(http:\/\/\S+)/,
        {},
        60_000,
      );
    },
    async stop() {
      await c.service?.stop();
      c.service = undefined;
    },
    async kill9() {
      const child = c.service?.child;
      c.service = undefined;
      if (child === undefined || child.exitCode !== null) return;
      await new Promise<void>((done) => {
        child.once('exit', () => done());
        child.kill('SIGKILL');
      });
    },
  };
  return c;
};

const getJson = async <T>(url: string, headers: Record<string, string> = {}): Promise<T> => {
  const response = await fetch(url, { headers });
  if (!response.ok) throw new Error(`GET ${url}: ${response.status} ${await response.text()}`);
  return (await response.json()) as T;
};

const ruleStatus = async (c: Cluster, ruleId: string): Promise<RuleStatus> => {
  const status = await getJson<{ rules: RuleStatus[] }>(`${c.buildIndex}/v1/replication/status`);
  const rule = status.rules.find((r) => r.id === ruleId);
  if (rule === undefined) throw new Error(`no rule ${ruleId} on ${c.name}`);
  return rule;
};

/** The signal: the rule's destination has every matching change (lag 0). */
const caughtUp = (c: Cluster, ruleId: string, timeoutMs = 90_000) =>
  eventually(
    `${c.name}: rule ${ruleId} caught up`,
    async () => {
      const rule = await ruleStatus(c, ruleId);
      return rule.state === 'caught-up' && rule.lag.positions === 0 ? rule : undefined;
    },
    timeoutMs,
  );

/** Every tag of the repositories whose name starts with `prefix`: `repo:tag` → digest. */
const tagsOf = async (c: Cluster, prefix: string): Promise<Record<string, string>> => {
  const out: Record<string, string> = {};
  const { repositories } = await getJson<{ repositories: string[] }>(`${c.buildIndex}/v1/catalog`);
  for (const repo of repositories.filter((r) => r.startsWith(prefix))) {
    const { tags } = await getJson<{ tags: string[] }>(
      `${c.buildIndex}/v1/repositories/${repo}/tags`,
    );
    for (const tag of tags) {
      const view = await getJson<{ digest: string }>(
        `${c.buildIndex}/v1/repositories/${repo}/tags/${tag}`,
      );
      out[`${repo}:${tag}`] = view.digest;
    }
  }
  return out;
};

const addRule = (
  c: Cluster,
  name: string,
  repo: string,
  to: Cluster | string,
  extra: string[] = [],
) => {
  const result = shoal([
    'rules',
    'add',
    '--name',
    name,
    '--repo',
    repo,
    '--to',
    typeof to === 'string' ? to : to.proxy,
    '--url',
    c.buildIndex,
    '--json',
    ...extra,
  ]);
  if (result.status !== 0) throw new Error(`rules add failed: ${result.stderr}`);
  return (JSON.parse(result.stdout) as { rule: { id: string } }).rule.id;
};

/** Every event of a cluster's log, read with `shoal log tail` on its data directory. */
const logOf = (c: Cluster): LoggedEvent[] => {
  const result = shoal(['log', 'tail', '--from', '1', '--json', '--data-dir', c.dataDir]);
  if (result.status !== 0) throw new Error(`log tail failed: ${result.stderr}`);
  return result.stdout
    .split('\n')
    .filter(Boolean)
    .map((line) => JSON.parse(line) as LoggedEvent);
};

const skopeoPush = (image: GeneratedImage, c: Cluster, ref: string) =>
  run(tools.skopeo, [
    '--insecure-policy',
    'copy',
    '--all',
    '--preserve-digests',
    '--dest-tls-verify=false',
    image.layoutRef,
    `docker://${c.host}/${ref}`,
  ]);

const crane = (...args: string[]) => run(tools.crane, [...args, '--insecure']).trim();

/** Points `repo:tag` at a digest the repository holds (a push of the manifest by tag). */
const tagAs = (c: Cluster, repo: string, digest: string, tag: string) =>
  crane('tag', `${c.host}/${repo}@${digest}`, tag);

type Referrer = { digest: string; artifactType: string; referrers?: Referrer[] };

/** Attaches a file to `ref` with oras; resolves with the referrer's digest. */
const orasAttach = (cwd: string, ref: string, artifactType: string, file: string) => {
  writeFileSync(join(cwd, file), randomBytes(64).toString('hex'));
  const out = runTool(
    tools.oras,
    ['attach', ref, '--plain-http', '--artifact-type', artifactType, `${file}:text/plain`],
    { cwd, env: { ...process.env, HOME: cwd } },
  );
  const digest = /Digest: (sha256:[0-9a-f]{64})/.exec(out)?.[1];
  if (digest === undefined) throw new Error(`no digest in oras attach output: ${out}`);
  return digest;
};

/** The direct referrers `oras discover` lists for `ref`, sorted by artifact type. */
const orasDiscover = (cwd: string, ref: string): Referrer[] => {
  const out = runTool(
    tools.oras,
    ['discover', ref, '--plain-http', '--format', 'json', '--depth', '1'],
    { cwd, env: { ...process.env, HOME: cwd } },
  );
  return ((JSON.parse(out) as { referrers?: Referrer[] }).referrers ?? [])
    .map((r) => ({ digest: r.digest, artifactType: r.artifactType }))
    .sort((x, y) => x.artifactType.localeCompare(y.artifactType));
};

const deleteTag = async (c: Cluster, repo: string, tag: string) => {
  const response = await fetch(`${c.proxy}/v2/${repo}/manifests/${tag}`, { method: 'DELETE' });
  expect(response.status).toBe(202);
};

describe('replication between two Shoal clusters', () => {
  let dir: ReturnType<typeof tempDir>;
  let a: Cluster;
  let b: Cluster;
  const images: GeneratedImage[] = [];
  let ab: string;

  beforeAll(async () => {
    for (const path of Object.values(tools)) {
      if (!existsSync(path)) throw new Error(`missing ${path}: run test/services/tools.sh install`);
    }
    dir = tempDir('shoal-replication-e2e-');
    const base = 20000 + Math.floor(Math.random() * 1200) * 10;
    a = cluster('a', join(dir.path, 'a'), base);
    b = cluster('b', join(dir.path, 'b'), base + 10);
    await Promise.all([a.start(), b.start()]);
    const platforms = [['linux/amd64'], ['linux/amd64', 'linux/arm64']];
    for (let i = 0; i < 4; i++) {
      images.push(
        await generateImage({
          dir: join(dir.path, `img-${i}`),
          layers: 1 + (i % 2),
          layerSize: 2048,
          platforms: platforms[i % 2] as string[],
        }),
      );
    }
    ab = addRule(a, 'a-to-b', 'e2e/ab/**', b);
  }, 120_000);

  afterAll(async () => {
    await Promise.all([a?.stop(), b?.stop()]);
    dir?.cleanup();
  });

  it('B converges to exactly A for matching repositories: 20 tags, moves, deletes', async () => {
    const [i0, i1, i2, i3] = images as [
      GeneratedImage,
      GeneratedImage,
      GeneratedImage,
      GeneratedImage,
    ];
    // Three matching repositories (one nested), and one that is not replicated.
    const plan: Array<[string, GeneratedImage[]]> = [
      ['e2e/ab/one', [i0, i1]],
      ['e2e/ab/two', [i2, i3]],
      ['e2e/ab/deep/three', [i0, i3]],
      ['e2e/other/x', [i1]],
    ];
    for (const [repo, list] of plan) {
      for (const [n, image] of list.entries()) skopeoPush(image, a, `${repo}:base-${n}`);
    }
    // 20 tags on the matching repositories: the 6 pushed above and 14 more by crane.
    for (const [repo, list] of plan.slice(0, 3)) {
      for (let t = 0; t < 5; t++) {
        if (t === 4 && repo === 'e2e/ab/deep/three') continue;
        tagAs(a, repo, (list[t % 2] as GeneratedImage).top.digest, `t${t}`);
      }
    }
    // Moves (some twice) and deletes.
    tagAs(a, 'e2e/ab/one', i1.top.digest, 't0');
    tagAs(a, 'e2e/ab/one', i0.top.digest, 't0');
    tagAs(a, 'e2e/ab/one', i1.top.digest, 't0');
    tagAs(a, 'e2e/ab/two', i2.top.digest, 't1');
    tagAs(a, 'e2e/ab/two', i3.top.digest, 't1');
    tagAs(a, 'e2e/ab/deep/three', i3.top.digest, 't2');
    await deleteTag(a, 'e2e/ab/one', 't3');
    await deleteTag(a, 'e2e/ab/two', 'base-0');
    await deleteTag(a, 'e2e/ab/deep/three', 't1');

    await caughtUp(a, ab);
    const source = await tagsOf(a, 'e2e/ab/');
    expect(Object.keys(source)).toHaveLength(20 - 3);
    expect(source['e2e/ab/one:t0']).toBe(i1.top.digest);
    expect(await tagsOf(b, 'e2e/')).toEqual(source);
    expect(await tagsOf(b, 'e2e/other/')).toEqual({});

    // The replicated multi-platform image is complete: skopeo pulls every platform from B.
    const pulled = join(dir.path, 'pulled-two');
    run(tools.skopeo, [
      '--insecure-policy',
      'copy',
      '--all',
      '--preserve-digests',
      '--src-tls-verify=false',
      `docker://${b.host}/e2e/ab/two:t1`,
      `oci:${pulled}:t1`,
    ]);
    const index = JSON.parse(readFileSync(join(pulled, 'index.json'), 'utf8'));
    expect(index.manifests[0].digest).toBe(i3.top.digest);
    for (const m of i3.manifests) {
      for (const blob of [m.manifest, m.config, ...m.layers]) {
        const bytes = readFileSync(join(pulled, 'blobs', 'sha256', blob.digest.slice(7)));
        expect(sha256(bytes)).toBe(blob.digest);
      }
    }
  }, 240_000);

  it('a rule added later with --backfill replicates the current matching tags', async () => {
    const [i0, i1] = images as [GeneratedImage, GeneratedImage];
    skopeoPush(i0, a, 'e2e/bf/app:v1');
    skopeoPush(i1, a, 'e2e/bf/app:v2');
    tagAs(a, 'e2e/bf/app', i1.top.digest, 'v1');
    await deleteTag(a, 'e2e/bf/app', 'v2');
    const plain = addRule(a, 'bf-plain', 'e2e/bf/**', b);
    await caughtUp(a, plain);
    expect(await tagsOf(b, 'e2e/bf/')).toEqual({});
    // With --url and an active replicator, `rules add --backfill` waits for the backfill and
    // reports its progress (JSON lines on stderr with --json): done up to the rule's position.
    const added = shoal([
      'rules',
      'add',
      '--name',
      'bf-backfill',
      '--repo',
      'e2e/bf/**',
      '--to',
      b.proxy,
      '--url',
      a.buildIndex,
      '--json',
      '--backfill',
    ]);
    expect(added.status).toBe(0);
    const { rule, position } = JSON.parse(added.stdout) as {
      rule: { id: string };
      position: number;
    };
    const reports = added.stderr
      .trim()
      .split('\n')
      .map((line) => JSON.parse(line) as { progress: string; done: number; total: number });
    expect(reports[reports.length - 1]).toMatchObject({
      progress: `backfill ${rule.id}`,
      done: position,
      total: position,
      final: true,
    });
    expect(await tagsOf(b, 'e2e/bf/')).toEqual({ 'e2e/bf/app:v1': i1.top.digest });
    await caughtUp(a, rule.id);
  }, 120_000);

  it('referrers and index children go with the tag; a referrer attached later follows', async () => {
    const multi = images[1] as GeneratedImage;
    // Outside e2e/: the other cases compare B's e2e/ repositories with A's.
    const repo = 'signed/app';
    const cwd = join(dir.path, 'oras');
    mkdirSync(cwd, { recursive: true });
    // At A: a multi-platform image with a signature and an SBOM attached to its index, and a
    // signature on one platform's manifest (a child), before any rule selects the repository.
    skopeoPush(multi, a, `${repo}:v1`);
    const indexDigest = multi.top.digest;
    const children = multi.manifests.map((m) => m.manifest.digest);
    const child = children[0] as string;
    const sig = orasAttach(cwd, `${a.host}/${repo}:v1`, 'application/vnd.e2e.signature', 's1');
    const sbom = orasAttach(cwd, `${a.host}/${repo}:v1`, 'application/spdx+json', 'sbom');
    const childSig = orasAttach(
      cwd,
      `${a.host}/${repo}@${child}`,
      'application/vnd.e2e.signature',
      's2',
    );
    const expected = [
      { digest: sbom, artifactType: 'application/spdx+json' },
      { digest: sig, artifactType: 'application/vnd.e2e.signature' },
    ];
    expect(orasDiscover(cwd, `${a.host}/${repo}:v1`)).toEqual(expected);

    // A backfilling rule copies the tag, its children, and the referrers of both.
    const rule = addRule(a, 'sig', 'signed/**', b, ['--backfill']);
    await caughtUp(a, rule);
    expect(crane('digest', `${b.host}/${repo}:v1`)).toBe(indexDigest);
    for (const digest of children) {
      expect(crane('digest', `${b.host}/${repo}@${digest}`)).toBe(digest);
    }
    expect(orasDiscover(cwd, `${b.host}/${repo}:v1`)).toEqual(expected);
    expect(orasDiscover(cwd, `${b.host}/${repo}@${child}`)).toEqual([
      { digest: childSig, artifactType: 'application/vnd.e2e.signature' },
    ]);
    // The referrer's own blob is there: the SBOM pulls from B.
    const sbomManifest = JSON.parse(crane('manifest', `${b.host}/${repo}@${sbom}`)) as {
      subject: { digest: string };
      layers: Array<{ digest: string }>;
    };
    expect(sbomManifest.subject.digest).toBe(indexDigest);
    const layer = sbomManifest.layers[0]?.digest as string;
    expect(sha256(Buffer.from(crane('blob', `${b.host}/${repo}@${layer}`)))).toBe(layer);

    // Attached after the tag was replicated: a second signature follows on its own.
    const late = orasAttach(cwd, `${a.host}/${repo}:v1`, 'application/vnd.e2e.attestation', 's3');
    await caughtUp(a, rule);
    expect(orasDiscover(cwd, `${b.host}/${repo}:v1`)).toEqual([
      expected[0],
      { digest: late, artifactType: 'application/vnd.e2e.attestation' },
      expected[1],
    ]);
    // Its outcome is recorded under the subject's referrers tag name.
    const recorded = logOf(a).filter(
      (e) => e.type === 'ReplicationSucceeded' && e.data['ruleId'] === rule,
    );
    expect(recorded.map((e) => [e.data['tag'], e.data['digest']])).toContainEqual([
      `sha256-${indexDigest.slice(7)}`,
      late,
    ]);
  }, 180_000);

  it('B stopped while A pushes and moves tags: restarted, B catches up', async () => {
    const [i0, i1, i2] = images as [GeneratedImage, GeneratedImage, GeneratedImage];
    await b.stop();
    skopeoPush(i2, a, 'e2e/ab/one:while-down');
    for (const digest of [
      i0.top.digest,
      i2.top.digest,
      i1.top.digest,
      i2.top.digest,
      i0.top.digest,
    ]) {
      tagAs(a, 'e2e/ab/one', digest, 'moved-5-times');
    }
    await deleteTag(a, 'e2e/ab/one', 't1');
    // The replicator notices and records it (signal: failures in a row), and keeps trying.
    const failing = await eventually('failures recorded while B is down', async () => {
      const rule = await ruleStatus(a, ab);
      return rule.failures.consecutive > 0 ? rule : undefined;
    });
    expect(failing.lag.positions).toBeGreaterThan(0);
    expect(failing.failures.last?.error).toMatch(/ECONNREFUSED|cannot reach/);

    await b.start();
    await caughtUp(a, ab);
    const source = await tagsOf(a, 'e2e/ab/');
    expect(source['e2e/ab/one:moved-5-times']).toBe(i0.top.digest);
    expect(source['e2e/ab/one:t1']).toBeUndefined();
    expect(await tagsOf(b, 'e2e/')).toEqual({ ...source, ...(await tagsOf(a, 'e2e/bf/')) });
  }, 240_000);

  it('kill -9 of A mid-replication: restarted, it resumes and skips nothing', async () => {
    const [, , i2, i3] = images as [GeneratedImage, GeneratedImage, GeneratedImage, GeneratedImage];
    // Twelve tag changes in quick succession (manifest PUTs straight to the proxy), then kill.
    const manifest = async (digest: string) => {
      const response = await fetch(`${a.proxy}/v2/e2e/ab/two/manifests/${digest}`, {
        headers: {
          accept:
            'application/vnd.oci.image.index.v1+json, application/vnd.oci.image.manifest.v1+json',
        },
      });
      return {
        bytes: Buffer.from(await response.arrayBuffer()),
        type: response.headers.get('content-type') ?? '',
      };
    };
    const bodies = await Promise.all([i2.top.digest, i3.top.digest].map(manifest));
    const puts = await Promise.all(
      Array.from({ length: 12 }, (_, n) => {
        const body = bodies[n % 2] as { bytes: Buffer; type: string };
        return fetch(`${a.proxy}/v2/e2e/ab/two/manifests/k${n}`, {
          method: 'PUT',
          headers: { 'content-type': body.type },
          body: body.bytes,
        });
      }),
    );
    expect(puts.map((p) => p.status)).toEqual(Array(12).fill(201));
    await a.kill9();
    // Killed mid-replication: of the twelve changes, some were not recorded as replicated.
    const atKill = logOf(a);
    const newTags = (e: LoggedEvent) => /^k\d+$/.test(String(e.data['tag']));
    const pushedAtKill = atKill.filter((e) => e.type === 'TagPushed' && newTags(e)).length;
    const doneAtKill = atKill.filter((e) => e.type === 'ReplicationSucceeded' && newTags(e)).length;
    expect(pushedAtKill).toBe(12);
    expect(doneAtKill).toBeLessThan(12);

    await a.start();
    await caughtUp(a, ab);
    expect(await tagsOf(b, 'e2e/ab/')).toEqual(await tagsOf(a, 'e2e/ab/'));

    // Nothing skipped: every matching tag change after the rule has its ReplicationSucceeded,
    // recorded once, in source order.
    const events = logOf(a);
    const ruleAdded = events.find(
      (e) => e.type === 'ReplicationRuleAdded' && e.data['id'] === ab,
    ) as LoggedEvent;
    const changes = events.filter(
      (e) =>
        (e.type === 'TagPushed' || e.type === 'TagDeleted') &&
        e.position > ruleAdded.position &&
        String(e.data['repo']).startsWith('e2e/ab/'),
    );
    const succeeded = events.filter(
      (e) => e.type === 'ReplicationSucceeded' && e.data['ruleId'] === ab,
    );
    const recorded = succeeded.map((e) => e.data['sourcePosition'] as number);
    expect(new Set(recorded).size).toBe(recorded.length);
    expect(recorded).toEqual([...recorded].sort((x, y) => x - y));
    expect(recorded).toEqual(changes.map((e) => e.position));
  }, 240_000);

  it('a blob copy interrupted half-way is never visible on B; a restart completes it', async () => {
    let caught: { digest: string; sent: number; size: number } | undefined;
    let big: GeneratedImage | undefined;
    for (let attempt = 0; attempt < 3 && caught === undefined; attempt++) {
      big = await generateImage({
        dir: join(dir.path, `big-${attempt}`),
        layers: 1,
        layerSize: 24 * 1024 * 1024,
        gzipLevel: 0,
      });
      skopeoPush(big, a, `e2e/ab/big:v${attempt}`);
      caught = await eventually(
        'a layer copy in progress',
        async () => {
          const rule = await ruleStatus(a, ab);
          const copying = rule.inFlight?.find(
            (c) => c.copying !== undefined && c.copying.sent > 0 && c.copying.sent < c.copying.size,
          )?.copying;
          if (copying !== undefined) return copying;
          if (rule.lag.positions === 0) return null;
          return undefined;
        },
        60_000,
        5,
      ).then((found) => found ?? undefined);
      if (caught !== undefined) await a.kill9();
    }
    expect(caught).toBeDefined();
    const layer = caught as { digest: string; size: number };

    // B has no blob, or the whole blob: an upload not committed is not visible.
    const headBlob = await fetch(`${b.proxy}/v2/e2e/ab/big/blobs/${layer.digest}`, {
      method: 'HEAD',
    });
    if (headBlob.status === 200) {
      const bytes = Buffer.from(
        await (await fetch(`${b.proxy}/v2/e2e/ab/big/blobs/${layer.digest}`)).arrayBuffer(),
      );
      expect(sha256(bytes)).toBe(layer.digest);
    } else {
      expect(headBlob.status).toBe(404);
    }

    await a.start();
    await caughtUp(a, ab);
    const get = await fetch(`${b.proxy}/v2/e2e/ab/big/blobs/${layer.digest}`);
    expect(get.status).toBe(200);
    const bytes = Buffer.from(await get.arrayBuffer());
    expect(bytes.length).toBe(layer.size);
    expect(sha256(bytes)).toBe(layer.digest);
    expect(await tagsOf(b, 'e2e/ab/big')).toEqual(await tagsOf(a, 'e2e/ab/big'));
  }, 300_000);

  it('A→B and B→A at once (different repositories, and a shared one) do not loop', async () => {
    const [i0, i1] = images as [GeneratedImage, GeneratedImage];
    const ba = addRule(b, 'b-to-a', 'e2e/ba/**', a);
    const sharedAB = addRule(a, 'shared-a-to-b', 'e2e/shared/**', b);
    const sharedBA = addRule(b, 'shared-b-to-a', 'e2e/shared/**', a);
    skopeoPush(i0, b, 'e2e/ba/x:v1');
    skopeoPush(i1, a, 'e2e/ab/y:v1');
    skopeoPush(i1, a, 'e2e/shared/s:v1');
    await Promise.all([
      caughtUp(a, ab),
      caughtUp(a, sharedAB),
      caughtUp(b, ba),
      caughtUp(b, sharedBA),
    ]);
    expect(await tagsOf(a, 'e2e/ba/')).toEqual({ 'e2e/ba/x:v1': i0.top.digest });
    expect(await tagsOf(b, 'e2e/ab/y')).toEqual({ 'e2e/ab/y:v1': i1.top.digest });
    expect(await tagsOf(b, 'e2e/shared/')).toEqual({ 'e2e/shared/s:v1': i1.top.digest });

    // B's copy of the shared tag went back to A as a no-op: A has the digest already.
    const pushesOf = (events: LoggedEvent[], repo: string) =>
      events.filter((e) => e.type === 'TagPushed' && e.data['repo'] === repo).length;
    const headA = logOf(a).length;
    const headB = logOf(b).length;
    // Both sides caught up again after that round: nothing more is written by either.
    await Promise.all([caughtUp(a, sharedAB), caughtUp(b, sharedBA), caughtUp(b, ba)]);
    const eventsA = logOf(a);
    const eventsB = logOf(b);
    expect(pushesOf(eventsA, 'e2e/shared/s')).toBe(1);
    expect(pushesOf(eventsB, 'e2e/shared/s')).toBe(1);
    expect(pushesOf(eventsA, 'e2e/ba/x')).toBe(1);
    expect(pushesOf(eventsB, 'e2e/ab/y')).toBe(1);
    expect(eventsA.length).toBe(headA);
    expect(eventsB.length).toBe(headB);
  }, 180_000);

  it('status and metrics report per rule; rules can be listed and removed', async () => {
    const text = await (await fetch(`${a.buildIndex}/metrics`)).text();
    expect(text).toMatch(
      new RegExp(`shoal_replication_lag_positions\\{[^}]*rule="${ab}"[^}]*\\} 0`),
    );
    expect(text).toMatch(/shoal_replication_lag_seconds\{/);
    // A's data directory belongs to its shoal dev: a build-index started on it is refused,
    // naming dev. Two build-index processes on one directory of their own share it, and the
    // second replicator stands by: one replicator per data directory.
    const refused = shoal(['build-index', '--data-dir', a.dataDir, '--port', '0']);
    expect(refused.status).toBe(1);
    expect(refused.stderr).toMatch(/is in use by shoal dev: shoal dev \(pid \d+; proxy /);
    const shared = tempDir('shoal-replication-standby-');
    const rule = shoal([
      'rules',
      'add',
      '--name',
      'standby',
      '--repo',
      'x/*',
      '--to',
      'http://127.0.0.1:1',
      '--data-dir',
      shared.path,
      '--json',
    ]);
    expect(rule.status).toBe(0);
    const standbyId = JSON.parse(rule.stdout).rule.id as string;
    const ready = /build-index listening on (http:\/\/\S+)/;
    const first = await startService(
      ['build-index', '--data-dir', shared.path, '--port', '0'],
      ready,
    );
    try {
      await eventually('the first replicator to be active', async () => {
        // A role process: with the security switch on, the status is for admins and
        // cluster services only.
        const body = await getJson<{ replicator: string }>(
          `${first.url}/v1/replication/status`,
          await serviceHeaders(),
        );
        return body.replicator === 'active' ? true : undefined;
      });
      const second = await startService(
        ['build-index', '--data-dir', shared.path, '--port', '0'],
        ready,
      );
      try {
        const standby = await eventually('the second replicator to stand by', async () => {
          const body = await getJson<{ replicator: string; rules: RuleStatus[] }>(
            `${second.url}/v1/replication/status`,
            await serviceHeaders(),
          );
          return body.replicator === 'standby' ? body : undefined;
        });
        expect(standby.rules.find((r) => r.id === standbyId)?.state).toBe('standby');
      } finally {
        await second.stop();
      }
    } finally {
      await first.stop();
      shared.cleanup();
    }
    const status = shoal(['replication', 'status', '--url', a.buildIndex]);
    expect(status.stdout).toContain(ab);
    expect(status.stdout).toContain('caught-up');
    const ls = JSON.parse(shoal(['rules', 'ls', '--json', '--data-dir', b.dataDir]).stdout);
    expect(ls.rules.map((r: { name: string }) => r.name).sort()).toEqual([
      'b-to-a',
      'shared-b-to-a',
    ]);
    const rm = shoal(['rules', 'rm', 'b-to-a', '--url', b.buildIndex, '--json']);
    expect(rm.status).toBe(0);
    const after = JSON.parse(shoal(['rules', 'ls', '--json', '--url', b.buildIndex]).stdout);
    expect(after.rules.map((r: { name: string }) => r.name)).toEqual(['shared-b-to-a']);
    const bad = shoal([
      'rules',
      'add',
      '--repo',
      'Team/[x]',
      '--to',
      'http://x',
      '--url',
      b.buildIndex,
    ]);
    expect(bad.status).toBe(1);
    expect(bad.stderr).toMatch(/PARAMETER_INVALID/);
    const secret = shoal([
      'rules',
      'add',
      '--repo',
      'x/*',
      '--to',
      'http://u:p@x',
      '--url',
      b.buildIndex,
    ]);
    expect(secret.stderr).toMatch(/credentials do not belong in the URL/);
  }, 60_000);
});

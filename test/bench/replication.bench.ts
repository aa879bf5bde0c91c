/**
 * `npm run bench:replication [-- --tags 1000 --push-concurrency 8 --json]`: two Shoal clusters
 * (`shoal dev` A and B, each its own data directory and log) and a rule A→B; pushes N small
 * images (one random 512-byte layer, a config, a manifest, a tag each; over the OCI API) to A
 * and measures replication while pushing and after:
 *
 * - time to converge (first push → B has every tag, the rule's status says lag 0), and the
 *   drain after the last push;
 * - tags per second pushed and replicated;
 * - lag while pushing, sampled from A's replication status every 250 ms: positions and seconds,
 *   p50/p99/max;
 * - per-change latency from A's log: ReplicationSucceeded time − TagPushed time, p50/p99/max.
 *
 * B is checked at the end: every tag present with A's digest. `--destination cncf` replicates
 * to the CNCF registry (`/usr/bin/docker-registry` on loopback) instead of a second Shoal,
 * which shows the replicator's own throughput apart from Shoal's ingest. Needs `npm run build`.
 */
import { spawn, spawnSync } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { Readable } from 'node:stream';
import { createRegistryClient } from '../../adapters/registry/registryClient';
import { sha256 } from '../fixtures/blobs';
import { createProgress, progressMode } from '../../services/shared/progress';
import { benchArgs } from './args';
import { freePort } from '../fixtures/ports';

const args = benchArgs(
  'bench:replication',
  {
    tags: { type: 'string', default: '1000' },
    'push-concurrency': { type: 'string', default: '8' },
    repos: { type: 'string', default: '10' },
    destination: { type: 'string', default: 'shoal' },
    json: { type: 'boolean', default: false },
  },
  `usage: npm run bench:replication -- [--tags 1000] [--push-concurrency 8] [--repos 10]
         [--destination shoal|cncf] [--json]
Tag pushes replicated to a second registry: throughput and lag.`,
);

const root = resolve(__dirname, '../../..');
const cli = join(root, 'dist/services/cli/main.js');

const startDev = async (name: string, dataDir: string, portBase: number): Promise<ChildProcess> => {
  const child = spawn(
    process.execPath,
    [cli, 'dev', '--data-dir', dataDir, '--port-base', String(portBase), '--cluster', name],
    { stdio: ['ignore', 'ignore', 'pipe'] },
  );
  let output = '';
  child.stderr?.on('data', (d: Buffer) => (output = (output + d.toString()).slice(-8000)));
  const deadline = Date.now() + 60_000;
  while (Date.now() < deadline) {
    if (child.exitCode !== null) throw new Error(`shoal dev ${name} exited:\n${output}`);
    if (/\bproxy\s+http:/.test(output)) return child;
    await new Promise((r) => setTimeout(r, 50));
  }
  child.kill('SIGKILL');
  throw new Error(`shoal dev ${name} did not start in 60 s:\n${output}`);
};

const startCncf = async (dir: string, port: number): Promise<ChildProcess> => {
  const config = join(dir, 'cncf.yml');
  writeFileSync(
    config,
    [
      'version: 0.1',
      'log: { level: error, accesslog: { disabled: true } }',
      'storage:',
      `  filesystem: { rootdirectory: ${join(dir, 'cncf')} }`,
      '  delete: { enabled: true }',
      `http: { addr: "127.0.0.1:${port}" }`,
      '',
    ].join('\n'),
  );
  const child = spawn('/usr/bin/docker-registry', ['serve', config], { stdio: 'ignore' });
  const deadline = Date.now() + 30_000;
  while (Date.now() < deadline) {
    const ok = await fetch(`http://127.0.0.1:${port}/v2/`).then(
      (r) => r.status === 200,
      () => false,
    );
    if (ok) return child;
    await new Promise((r) => setTimeout(r, 50));
  }
  child.kill('SIGKILL');
  throw new Error('the CNCF registry did not start in 30 s');
};

const stop = (child: ChildProcess) =>
  new Promise<void>((done) => {
    if (child.exitCode !== null || child.signalCode !== null) return done();
    child.once('exit', () => done());
    child.kill('SIGTERM');
  });

const percentile = (values: readonly number[], p: number): number => {
  if (values.length === 0) return 0;
  const sorted = [...values].sort((x, y) => x - y);
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)] as number;
};

type RuleStatus = {
  id: string;
  state: string;
  lag: { positions: number; seconds: number };
  replicated: number;
};

const main = async () => {
  if (!existsSync(cli)) throw new Error(`missing ${cli}: run \`npm run build\``);
  const total = Number(args.tags);
  const pushConcurrency = Number(args['push-concurrency']);
  const repos = Number(args.repos);
  const log = (line: string) => {
    if (!args.json) process.stderr.write(`${line}\n`);
  };
  const work = mkdtempSync(join(tmpdir(), 'shoal-bench-replication-'));
  const children: ChildProcess[] = [];
  try {
    const [baseA, baseB] = [await freePort(), await freePort()];
    children.push(await startDev('a', join(work, 'a'), baseA));
    const toCncf = args.destination === 'cncf';
    children.push(
      toCncf ? await startCncf(work, baseB) : await startDev('b', join(work, 'b'), baseB),
    );
    const proxyA = `http://127.0.0.1:${baseA}`;
    const buildIndexA = `http://127.0.0.1:${baseA + 2}`;
    const buildIndexB = `http://127.0.0.1:${baseB + 2}`;
    const added = await fetch(`${buildIndexA}/v1/replication/rules`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ name: 'bench', repo: 'bench/**', to: `http://127.0.0.1:${baseB}` }),
    });
    if (added.status !== 201) throw new Error(`rule: ${added.status} ${await added.text()}`);
    const ruleId = ((await added.json()) as { rule: { id: string } }).rule.id;
    const status = async (): Promise<RuleStatus> => {
      const body = (await (await fetch(`${buildIndexA}/v1/replication/status`)).json()) as {
        rules: RuleStatus[];
      };
      return body.rules.find((r) => r.id === ruleId) as RuleStatus;
    };
    log(`A ${proxyA}, B http://127.0.0.1:${baseB}; rule ${ruleId}; pushing ${total} images…`);

    // Push N images concurrently; sample the lag meanwhile.
    const client = createRegistryClient({ baseUrl: proxyA });
    const upload = async (repo: string, bytes: Buffer) => {
      const digest = sha256(bytes);
      await client.uploadBlob(
        repo,
        { digest, size: bytes.length },
        async (s, e) => Readable.from([bytes.subarray(s, e + 1)]),
        { chunkSize: 1024 * 1024 },
      );
      return digest;
    };
    const expected = new Map<string, string>();
    const samples: Array<{ positions: number; seconds: number }> = [];
    let pushing = true;
    const sampler = (async () => {
      while (pushing) {
        const s = await status().catch(() => undefined);
        if (s !== undefined) samples.push(s.lag);
        await new Promise((r) => setTimeout(r, 250));
      }
    })();
    // Progress on stderr: a bar on a terminal, JSON lines with --json, else nothing.
    const pushProgress = createProgress({
      label: 'bench:replication push',
      unit: 'images',
      total,
      mode: progressMode(args),
    });
    const started = performance.now();
    let next = 0;
    await Promise.all(
      Array.from({ length: pushConcurrency }, async () => {
        while (next < total) {
          const i = next++;
          const repo = `bench/app-${i % repos}`;
          const layer = randomBytes(512);
          const config = Buffer.from(JSON.stringify({ architecture: 'amd64', os: 'linux', i }));
          const [layerDigest, configDigest] = [
            await upload(repo, layer),
            await upload(repo, config),
          ];
          const manifest = Buffer.from(
            JSON.stringify({
              schemaVersion: 2,
              mediaType: 'application/vnd.oci.image.manifest.v1+json',
              config: {
                mediaType: 'application/vnd.oci.image.config.v1+json',
                digest: configDigest,
                size: config.length,
              },
              layers: [
                {
                  mediaType: 'application/vnd.oci.image.layer.v1.tar+gzip',
                  digest: layerDigest,
                  size: layer.length,
                },
              ],
            }),
          );
          await client.putManifest(
            repo,
            `t${i}`,
            manifest,
            'application/vnd.oci.image.manifest.v1+json',
          );
          expected.set(`${repo}:t${i}`, sha256(manifest));
          pushProgress.increment();
        }
      }),
    );
    pushProgress.stop();
    const pushedAt = performance.now();
    pushing = false;
    await sampler;
    log(`pushed ${total} images in ${((pushedAt - started) / 1000).toFixed(1)} s; converging…`);

    for (;;) {
      const s = await status();
      if (s.state === 'caught-up' && s.lag.positions === 0) break;
      if (performance.now() - pushedAt > 30 * 60_000) throw new Error('no convergence in 30 min');
      await new Promise((r) => setTimeout(r, 100));
    }
    const convergedAt = performance.now();
    client.close();

    // B has every tag with A's digest.
    let wrong = 0;
    const clientB = createRegistryClient({ baseUrl: `http://127.0.0.1:${baseB}` });
    for (const [key, digest] of expected) {
      const [repo, tag] = key.split(':') as [string, string];
      if (toCncf) {
        if ((await clientB.manifestInfo(repo, tag))?.digest !== digest) wrong += 1;
        continue;
      }
      const response = await fetch(`${buildIndexB}/v1/repositories/${repo}/tags/${tag}`);
      const body = response.ok ? ((await response.json()) as { digest: string }) : undefined;
      if (body?.digest !== digest) wrong += 1;
    }
    clientB.close();
    if (wrong > 0) throw new Error(`${wrong} of ${total} tags differ on B`);

    // Per-change latency: ReplicationSucceeded.at − TagPushed.at, from A's log.
    const dump = spawnSync(
      process.execPath,
      [cli, 'log', 'tail', '--from', '1', '--json', '--data-dir', join(work, 'a')],
      { encoding: 'utf8', maxBuffer: 512 * 1024 * 1024 },
    );
    const events = dump.stdout
      .split('\n')
      .filter(Boolean)
      .map(
        (line) =>
          JSON.parse(line) as {
            position: number;
            type: string;
            data: { sourcePosition?: number };
            metadata: { at: string };
          },
      );
    const pushedTimes = new Map(
      events
        .filter((e) => e.type === 'TagPushed')
        .map((e) => [e.position, Date.parse(e.metadata.at)]),
    );
    const latencies = events
      .filter((e) => e.type === 'ReplicationSucceeded')
      .map(
        (e) =>
          (Date.parse(e.metadata.at) - (pushedTimes.get(e.data.sourcePosition ?? 0) ?? 0)) / 1000,
      );

    const seconds = (ms: number) => ms / 1000;
    const summary = {
      tags: total,
      destination: toCncf ? 'cncf' : 'shoal',
      pushConcurrency,
      pushSeconds: seconds(pushedAt - started),
      pushedTagsPerSecond: total / seconds(pushedAt - started),
      convergeSeconds: seconds(convergedAt - started),
      drainAfterPushSeconds: seconds(convergedAt - pushedAt),
      replicatedTagsPerSecond: total / seconds(convergedAt - started),
      lagWhilePushing: {
        samples: samples.length,
        positions: {
          p50: percentile(
            samples.map((s) => s.positions),
            50,
          ),
          p99: percentile(
            samples.map((s) => s.positions),
            99,
          ),
          max: Math.max(0, ...samples.map((s) => s.positions)),
        },
        seconds: {
          p50: percentile(
            samples.map((s) => s.seconds),
            50,
          ),
          p99: percentile(
            samples.map((s) => s.seconds),
            99,
          ),
          max: Math.max(0, ...samples.map((s) => s.seconds)),
        },
      },
      changeLatencySeconds: {
        count: latencies.length,
        p50: percentile(latencies, 50),
        p99: percentile(latencies, 99),
        max: Math.max(0, ...latencies),
      },
    };
    if (args.json) {
      process.stdout.write(`${JSON.stringify(summary)}\n`);
      return;
    }
    const f = (n: number, digits = 2) => n.toFixed(digits);
    const l = summary.lagWhilePushing;
    const c = summary.changeLatencySeconds;
    process.stdout.write(
      [
        `tags: ${total} small images (${repos} repositories), pushed with ${pushConcurrency} ` +
          `clients; destination: ${summary.destination}`,
        `push: ${f(summary.pushSeconds)} s (${f(summary.pushedTagsPerSecond, 1)} tags/s)`,
        `converged: ${f(summary.convergeSeconds)} s after the first push, ` +
          `${f(summary.drainAfterPushSeconds)} s after the last ` +
          `(${f(summary.replicatedTagsPerSecond, 1)} tags/s replicated)`,
        `lag while pushing (${l.samples} samples): positions p50 ${l.positions.p50}, ` +
          `p99 ${l.positions.p99}, max ${l.positions.max}; seconds p50 ${f(l.seconds.p50)}, ` +
          `p99 ${f(l.seconds.p99)}, max ${f(l.seconds.max)}`,
        `per-change latency (${c.count} changes): p50 ${f(c.p50)} s, p99 ${f(c.p99)} s, ` +
          `max ${f(c.max)} s`,
        '',
      ].join('\n'),
    );
  } finally {
    for (const child of children.reverse()) await stop(child);
    rmSync(work, { recursive: true, force: true });
  }
};

main().catch((error: unknown) => {
  process.stderr.write(`bench:replication failed: ${(error as Error).stack ?? String(error)}\n`);
  process.exitCode = 1;
});

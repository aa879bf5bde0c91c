/**
 * `npm run bench:gc [-- --blobs 100000 --per-manifest 10 --pushes 40 --json]`: GC's
 * throughput and its effect on push latency.
 *
 * 1. Throughput. Builds a SQLite log synthetically (no bytes behind it): `--blobs` uploaded
 *    blobs, one image manifest per `--per-manifest` of them, every other manifest tagged, all
 *    older than the grace window — so half the manifests and their blobs are garbage. Brings
 *    GC's projections up to the head (timed apart), then runs GC dry (decide only) and for
 *    real (each removal a compare-and-swap append). Prints manifests, blobs and bytes
 *    examined per second (bytes are the blobs' recorded sizes, nominal here).
 * 2. Push latency. Starts `shoal dev`, seeds its log the same way, then pushes `--pushes`
 *    small images (two layers and a config, HEAD then upload, then the manifest) with no GC,
 *    and again while one GC run in build-index collects the seeded garbage (up to `--pushes`,
 *    as long as the run lasts). Prints p50/p99 of each push and the ratio. `shoal dev` is one
 *    process: GC's appends and the proxy share its event loop, which a fleet does not.
 * 3. The same with the roles as separate processes on one data directory (build-index with
 *    GC, an origin, a proxy): the baseline a fleet is closer to.
 *
 * Needs `npm run build`. The machine may be shared: compare ratios, not seconds.
 */
import { spawn } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { loadavg, tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import type { EventLog, ShoalEvent } from '../../domain';
import { makeEvent } from '../../domain';
import { openSqliteEventLog } from '../../adapters/eventlog';
import { openSqliteProjectionStore } from '../../adapters/projection-store/sqlite/sqliteProjectionStore';
import { createGcService, gcProjections } from '../../services/gc/main';
import type { GcReport } from '../../services/gc/client/gcApi';
import { systemClock } from '../../services/shared/clock';
import { createProjectionRunner } from '../../services/shared/projectionRunner';
import { configuredServices } from '../fixtures/cli';
import { benchArgs } from './args';

const args = benchArgs(
  'bench:gc',
  {
    blobs: { type: 'string', default: '100000' },
    'per-manifest': { type: 'string', default: '10' },
    pushes: { type: 'string', default: '40' },
    json: { type: 'boolean', default: false },
  },
  `usage: npm run bench:gc -- [--blobs 100000] [--per-manifest 10] [--pushes 40] [--json]
GC's throughput on a synthetic log (dry and real run), then push latency on shoal dev with no
GC and while a GC run collects.`,
);
const blobCount = Number(args.blobs);
const perManifest = Number(args['per-manifest']);
const pushes = Number(args.pushes);
const root = resolve(__dirname, '../../..');
const cli = join(root, 'dist/services/cli/main.js');

const digestOf = (bytes: Buffer | string) =>
  `sha256:${createHash('sha256').update(bytes).digest('hex')}`;
const nominalSize = 4 * 1024 * 1024;

/** Appends the synthetic history: blobs, manifests over them, every other manifest tagged. */
const seed = async (log: EventLog, prefix: string): Promise<number> => {
  const metadata = {
    at: new Date(Date.now() - 24 * 3600_000).toISOString(),
    actor: 'bench',
    cluster: 'default',
  };
  let n = 0;
  const id = () => `${prefix}-${n++}`;
  let batch: ShoalEvent[] = [];
  const flush = async () => {
    if (batch.length > 0) await log.append(batch);
    batch = [];
  };
  const push = async (event: ShoalEvent) => {
    batch.push(event);
    if (batch.length >= 2000) await flush();
  };
  for (let m = 0; m * perManifest < blobCount; m++) {
    const repo = `bench/${prefix}-${m % 100}`;
    const blobs: string[] = [];
    for (let b = m * perManifest; b < Math.min(blobCount, (m + 1) * perManifest); b++) {
      const digest = digestOf(`${prefix}-blob-${b}`);
      blobs.push(digest);
      await push(
        makeEvent('BlobUploaded', { digest, size: nominalSize, repo }, { id: id(), metadata }),
      );
    }
    const manifest = digestOf(`${prefix}-manifest-${m}`);
    await push(
      makeEvent(
        'ManifestPushed',
        {
          repo,
          digest: manifest,
          mediaType: 'application/vnd.oci.image.manifest.v1+json',
          size: 600,
          references: blobs,
        },
        { id: id(), metadata },
      ),
    );
    if (m % 2 === 0) {
      await push(
        makeEvent('TagPushed', { repo, tag: `t${m}`, digest: manifest }, { id: id(), metadata }),
      );
    }
  }
  await flush();
  return n;
};

const throughput = async () => {
  const dir = mkdtempSync(join(tmpdir(), 'shoal-bench-gc-'));
  try {
    const log = openSqliteEventLog(join(dir, 'log.db'), { durability: 'normal' });
    const store = openSqliteProjectionStore(join(dir, 'projections.db'));
    let t = performance.now();
    const events = await seed(log, 'tp');
    const seedMs = performance.now() - t;
    const runner = createProjectionRunner({ log, store, projections: gcProjections });
    t = performance.now();
    await runner.catchUp();
    const projectMs = performance.now() - t;
    const gc = createGcService({
      config: { graceMs: 3600_000, batchSize: 1000 },
      cluster: 'default',
      actor: 'bench',
      log,
      store,
      clock: systemClock,
      sync: () => runner.catchUp(),
    });
    const dry = await gc.run({ dryRun: true });
    const real = await gc.run({});
    await log.close();
    await store.close();
    return { events, seedMs, projectMs, dry: rates(dry), real: rates(real) };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
};

const rates = (report: GcReport) => ({
  ms: report.ms,
  planMs: report.planMs,
  examined: report.examined,
  removed: report.removed,
  blobsPerSec: Math.round(report.examined.blobs / (report.ms / 1000)),
  manifestsPerSec: Math.round(report.examined.manifests / (report.ms / 1000)),
  bytesPerSec: Math.round(report.examined.bytes / (report.ms / 1000)),
});

const percentile = (values: number[], p: number) => {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))] ?? NaN;
};

/** `shoal dev` on a fresh directory; resolves with its endpoints and a stop. */
const startDev = async (dataDir: string) => {
  const base = 20000 + Math.floor(Math.random() * 12000);
  const child = spawn(
    process.execPath,
    [cli, 'dev', '--data-dir', dataDir, '--port-base', String(base)],
    {
      env: { ...process.env, SHOAL_LOG_LEVEL: 'warn' },
      stdio: ['ignore', 'pipe', 'pipe'],
    },
  );
  let output = '';
  await new Promise<void>((done, fail) => {
    const onData = (d: Buffer) => {
      output += d.toString();
      if (/\bproxy\s+http:\/\/\S+/.test(output)) done();
    };
    child.stdout.on('data', onData);
    child.stderr.on('data', onData);
    child.once('exit', (code) => fail(new Error(`shoal dev exited ${code}:\n${output}`)));
  });
  const endpoints = JSON.parse(readFileSync(join(dataDir, 'endpoints.json'), 'utf8')) as {
    proxy: string;
    buildIndex: string;
  };
  return {
    ...endpoints,
    stop: () =>
      new Promise<void>((done) => {
        child.once('exit', () => done());
        child.kill('SIGTERM');
      }),
  };
};

const pushImage = async (url: string, repo: string, tag: string): Promise<number> => {
  const started = performance.now();
  const blobs = [randomBytes(32 * 1024), randomBytes(32 * 1024), Buffer.from(`{"t":"${tag}"}`)];
  for (const bytes of blobs) {
    const digest = digestOf(bytes);
    const head = await fetch(`${url}/v2/${repo}/blobs/${digest}`, { method: 'HEAD' });
    if (head.status === 200) continue;
    const start = await fetch(`${url}/v2/${repo}/blobs/uploads/`, { method: 'POST' });
    const location = new URL(start.headers.get('location') ?? '', url);
    location.searchParams.set('digest', digest);
    const put = await fetch(location, { method: 'PUT', body: bytes });
    if (put.status !== 201) throw new Error(`blob upload: ${put.status}`);
  }
  const [l1, l2, config] = blobs.map((b) => ({ digest: digestOf(b as Buffer), size: b?.length }));
  const manifest = JSON.stringify({
    schemaVersion: 2,
    mediaType: 'application/vnd.oci.image.manifest.v1+json',
    config: { mediaType: 'application/vnd.oci.image.config.v1+json', ...config },
    layers: [l1, l2].map((l) => ({ mediaType: 'application/vnd.oci.image.layer.v1.tar', ...l })),
  });
  const put = await fetch(`${url}/v2/${repo}/manifests/${tag}`, {
    method: 'PUT',
    headers: { 'content-type': 'application/vnd.oci.image.manifest.v1+json' },
    body: manifest,
  });
  if (put.status !== 201) throw new Error(`manifest put: ${put.status} ${await put.text()}`);
  return performance.now() - started;
};

/**
 * The roles as separate processes on one data directory (one SQLite log and projection store,
 * as several processes on a host share them): build-index, where GC runs; an origin; a proxy
 * whose tags go to that build-index. GC's appends and projection work no longer share the
 * proxy's event loop, as in a fleet.
 */
const startProcesses = async (dataDir: string) => {
  const services = configuredServices(join(dataDir, '..'), {
    SHOAL_LOG_LEVEL: 'warn',
    SHOAL_SECURITY_MODE: 'open',
  });
  const common = `dataDir: ${JSON.stringify(dataDir)}\nlisten: { host: 127.0.0.1, port: 0 }\n`;
  try {
    const buildIndex = await services.start(
      'build-index',
      'build-index',
      common,
      /build-index listening on (http:\/\/\S+)/,
    );
    await services.start(
      'origin',
      'origin',
      `${common}id: o1\nreplicas: 1\n`,
      /origin o1 listening on (http:\/\/\S+)/,
    );
    const proxy = await services.start(
      'proxy',
      'proxy',
      `${common}origins: { replicas: 1 }\nbuildIndex: { url: ${JSON.stringify(buildIndex.url)} }\n`,
      /proxy listening on (http:\/\/\S+)/,
    );
    return { proxy: proxy.url, buildIndex: buildIndex.url, stop: () => services.stopAll() };
  } catch (error) {
    await services.stopAll();
    throw error;
  }
};

type Cluster = { proxy: string; buildIndex: string; stop: () => Promise<void> };

const pushLatency = async (start: (dataDir: string) => Promise<Cluster>) => {
  const dir = mkdtempSync(join(tmpdir(), 'shoal-bench-gc-dev-'));
  const dev = await start(join(dir, 'data'));
  try {
    const log = openSqliteEventLog(join(dir, 'data', 'log.db'));
    await seed(log, 'pl');
    await log.close();
    const gcRun = async (dryRun: boolean) => {
      const response = await fetch(`${dev.buildIndex}/v1/gc/runs`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ dryRun, graceMs: 3600_000 }),
      });
      if (response.status !== 200) throw new Error(`gc run: ${response.status}`);
      return (await response.json()) as GcReport;
    };
    await gcRun(true); // build-index has caught up with the seeded log
    // …and the proxy's and origin's runners: a first push waits for them (not counted).
    await pushImage(dev.proxy, 'bench/push', 'warm-up');
    const quiet: number[] = [];
    for (let i = 0; i < pushes; i++) quiet.push(await pushImage(dev.proxy, 'bench/push', `q${i}`));
    // One real run collects the seeded garbage; pushes go on while it runs (up to --pushes).
    let running = true;
    const run = gcRun(false).finally(() => {
      running = false;
    });
    const busy: number[] = [];
    while (running && busy.length < pushes) {
      busy.push(await pushImage(dev.proxy, 'bench/push', `b${busy.length}`));
    }
    const report = await run;
    const summary = (values: number[]) => ({
      p50: Math.round(percentile(values, 50) * 10) / 10,
      p99: Math.round(percentile(values, 99) * 10) / 10,
    });
    return {
      quiet: summary(quiet),
      duringGc: summary(busy),
      pushesDuringGc: busy.length,
      run: rates(report),
    };
  } finally {
    await dev.stop();
    rmSync(dir, { recursive: true, force: true });
  }
};

const main = async () => {
  const load = loadavg()[0];
  const tp = await throughput();
  const pl = await pushLatency(startDev);
  const apart = await pushLatency(startProcesses);
  const result = {
    blobs: blobCount,
    perManifest,
    pushes,
    load,
    throughput: tp,
    pushLatency: pl,
    pushLatencySeparateProcesses: apart,
  };
  if (args.json) {
    process.stdout.write(`${JSON.stringify(result, null, 2)}\n`);
    return;
  }
  const mb = (bytes: number) => `${(bytes / 2 ** 20).toFixed(0)} MiB`;
  console.log(
    `gc bench: ${blobCount} blobs, ${perManifest} per manifest (load ${load?.toFixed(2)})`,
  );
  console.log(
    `  log seeded with ${tp.events} events in ${tp.seedMs.toFixed(0)} ms; projections in ${tp.projectMs.toFixed(0)} ms`,
  );
  for (const [name, r] of [
    ['dry run', tp.dry],
    ['real run', tp.real],
  ] as const) {
    console.log(
      `  ${name}: ${r.ms} ms (plan ${r.planMs} ms): ${r.blobsPerSec} blobs/s, ` +
        `${r.manifestsPerSec} manifests/s, ${mb(r.bytesPerSec)}/s examined; ` +
        `${name === 'dry run' ? 'would remove' : 'removed'} ` +
        `${r.removed.manifests} manifests, ${r.removed.blobs} blobs`,
    );
  }
  for (const [name, p] of [
    ['shoal dev (one process)', pl],
    ['separate processes', apart],
  ] as const) {
    const ratio = (p.duringGc.p50 / p.quiet.p50).toFixed(2);
    console.log(
      `  push latency, ${name}: quiet p50 ${p.quiet.p50} ms p99 ${p.quiet.p99} ms ` +
        `(${pushes} pushes); during a GC run of ${p.run.ms} ms removing ${p.run.removed.blobs} ` +
        `blobs: p50 ${p.duringGc.p50} ms p99 ${p.duringGc.p99} ms (${p.pushesDuringGc} pushes, ×${ratio})`,
    );
  }
};

main().catch((error: unknown) => {
  console.error(error);
  process.exit(1);
});

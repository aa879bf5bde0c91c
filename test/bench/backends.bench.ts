/**
 * `npm run bench:backends [-- --size 1GiB --small 128MiB --backends filesystem,s3,gcs,http,registry --json]`:
 * write-back and backend-fetch throughput of one origin per storage backend, on loopback,
 * against real servers (versitygw for S3, fake-gcs-server for GCS, nginx with WebDAV for
 * http, the CNCF registry as a pull-through upstream), each started by its `test/services/*.sh` script.
 *
 * For each backend: an origin (in this process; memory log) takes a blob through an upload
 * session, the bench times the write-back (commit → `BlobPersisted`), then the origin loses
 * its disk copy, restarts, and the bench times a read through it: the origin fetches the blob
 * from the backend, stores it and streams it on (a fill). The registry backend is read-only:
 * its blob is pushed to the upstream first, and only the fetch is timed.
 *
 * Memory: peak RSS growth of this process during each phase, for a small and the large blob:
 * streaming keeps it flat as the blob grows (the bench flags growth above 64 MiB).
 * Baseline, same run: `cp` of the same file on the same disk (the copy every phase makes at
 * least once), as a throughput ratio. The load average is printed: the machine may be shared.
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { createReadStream, createWriteStream, mkdtempSync, rmSync } from 'node:fs';
import { request } from 'node:http';
import { loadavg, tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { filter, firstValueFrom, timeout } from 'rxjs';
import { createMemoryEventLog } from '../../adapters/eventlog/memory/memoryEventLog';
import { createMemoryProjectionStore } from '../../adapters/projection-store/memory/memoryProjectionStore';
import type { Digest } from '../../domain';
import { createOriginBackends } from '../../services/origin/backendConfig';
import { createOriginClient } from '../../services/origin/client/originClient';
import { OriginConfigSchema } from '../../services/origin/config';
import { startOrigin } from '../../services/origin/main';
import { systemClock } from '../../services/shared/clock';
import { validateConfig } from '../../services/shared/config';
import { openDataDir } from '../../services/shared/dataDir';
import { silentLogger } from '../../services/shared/logger';
import { benchArgs } from './args';

const args = benchArgs(
  'bench:backends',
  {
    size: { type: 'string', default: '1GiB' },
    small: { type: 'string', default: '128MiB' },
    backends: { type: 'string', default: 'filesystem,s3,gcs,http,registry' },
    json: { type: 'boolean', default: false },
  },
  `usage: npm run bench:backends -- [--size 1GiB] [--small 128MiB]
         [--backends filesystem,s3,gcs,http,registry] [--json]
One origin per backend (real servers on loopback): write-back time and a fetch after the origin
lost its copy, for a large and a small blob.`,
);

const MiB = 1024 * 1024;
const parseSize = (text: string): number => {
  const m = /^(\d+(?:\.\d+)?)\s*(B|KiB|MiB|GiB|K|M|G)?$/i.exec(text.trim());
  if (m === null) throw new Error(`want a size like 1GiB or 128MiB, got "${text}"`);
  const unit = (m[2] ?? 'B').toUpperCase().replace('IB', '');
  return Math.round(Number(m[1]) * ({ B: 1, K: 1024, M: MiB, G: 1024 * MiB }[unit] ?? 1));
};

const root = resolve(__dirname, '../../..');
const say = (text: string) => process.stderr.write(`${text}\n`);

/** Starts a test server through its script and returns the `NAME=value` line's value. */
const service = (script: string, name: string): string => {
  const out = execFileSync('bash', [join(root, 'test/services', script), 'start'], {
    encoding: 'utf8',
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  const line = out.split('\n').find((l) => l.startsWith(`${name}=`));
  if (line === undefined) throw new Error(`${script} start printed no ${name}=`);
  return line.slice(name.length + 1);
};

/** A file of `size` random bytes and its digest. */
const makeBlob = async (dir: string, size: number) => {
  const path = join(dir, `blob-${size}`);
  const hash = createHash('sha256');
  await pipeline(
    Readable.from(
      (async function* () {
        for (let left = size; left > 0; left -= 4 * MiB) {
          const chunk = randomBytes(Math.min(4 * MiB, left));
          hash.update(chunk);
          yield chunk;
        }
      })(),
    ),
    createWriteStream(path),
  );
  return { path, size, digest: `sha256:${hash.digest('hex')}` as Digest };
};

/** Tracks the peak RSS from `start()` on; `peak()` gives the growth over the start. */
const rssWatch = () => {
  let base = 0;
  let max = 0;
  const timer = setInterval(() => (max = Math.max(max, process.memoryUsage.rss())), 10);
  timer.unref();
  return {
    start: () => {
      base = process.memoryUsage.rss();
      max = base;
    },
    peak: () => Math.max(max, process.memoryUsage.rss()) - base,
    stop: () => clearInterval(timer),
  };
};

/** Pushes a blob to the upstream registry over its own API (monolithic upload). */
const seedUpstream = async (
  url: string,
  auth: string,
  repo: string,
  blob: { path: string; size: number; digest: Digest },
): Promise<void> => {
  const call = (method: string, path: string, body?: Readable, length?: number) =>
    new Promise<{ status: number; location?: string }>((done, fail) => {
      const req = request(
        new URL(path, url),
        {
          method,
          headers: {
            authorization: `Basic ${auth}`,
            ...(length !== undefined && {
              'content-length': String(length),
              'content-type': 'application/octet-stream',
            }),
          },
        },
        (res) => {
          res.resume();
          res.on('end', () =>
            done({
              status: res.statusCode ?? 0,
              ...(res.headers.location !== undefined && { location: res.headers.location }),
            }),
          );
        },
      );
      req.on('error', fail);
      if (body === undefined) req.end();
      else body.pipe(req);
    });
  const started = await call('POST', `/v2/${repo}/blobs/uploads/`);
  if (started.status !== 202 || started.location === undefined) {
    throw new Error(`upstream refused the upload: HTTP ${started.status}`);
  }
  const target = new URL(started.location, url);
  target.searchParams.set('digest', blob.digest);
  const put = await call(
    'PUT',
    `${target.pathname}${target.search}`,
    createReadStream(blob.path),
    blob.size,
  );
  if (put.status !== 201) throw new Error(`upstream refused the blob: HTTP ${put.status}`);
};

type Phase = { seconds: number; mibPerS: number; peakRssMiB: number };
type Row = {
  backend: string;
  size: number;
  writeBack?: Phase;
  fetch: Phase;
};

const timed = async (
  watch: ReturnType<typeof rssWatch>,
  size: number,
  work: () => Promise<void>,
): Promise<Phase> => {
  watch.start();
  const t0 = performance.now();
  await work();
  const seconds = (performance.now() - t0) / 1000;
  return {
    seconds: Number(seconds.toFixed(2)),
    mibPerS: Number((size / MiB / seconds).toFixed(1)),
    peakRssMiB: Number((watch.peak() / MiB).toFixed(1)),
  };
};

const backendConfigOf = async (
  type: string,
  work: string,
): Promise<{
  config: Record<string, unknown>;
  repo: string;
  seed?: (blob: Blob) => Promise<void>;
}> => {
  switch (type) {
    case 'filesystem':
      return { config: { type: 'filesystem', path: join(work, 'fs-backend') }, repo: 'bench/fs' };
    case 's3': {
      const endpoint = service('s3.sh', 'S3_ENDPOINT');
      const bucket = `bench-${randomBytes(4).toString('hex')}`;
      const { S3Client, CreateBucketCommand } = await import('@aws-sdk/client-s3');
      const client = new S3Client({
        endpoint,
        region: 'us-east-1',
        forcePathStyle: true,
        credentials: { accessKeyId: 'shoal-test', secretAccessKey: 'shoal-test-secret' },
      });
      await client.send(new CreateBucketCommand({ Bucket: bucket }));
      client.destroy();
      return {
        config: {
          type: 's3',
          s3: {
            endpoint,
            bucket,
            forcePathStyle: true,
            accessKeyId: 'shoal-test',
            secretAccessKey: 'shoal-test-secret',
          },
        },
        repo: 'bench/s3',
      };
    }
    case 'gcs': {
      const endpoint = service('gcs.sh', 'GCS_ENDPOINT');
      const bucket = `bench-${randomBytes(4).toString('hex')}`;
      const { Storage } = await import('@google-cloud/storage');
      await new Storage({ apiEndpoint: endpoint, projectId: 'bench' }).createBucket(bucket);
      return {
        config: { type: 'gcs', gcs: { endpoint, bucket, projectId: 'bench' } },
        repo: 'bench/gcs',
      };
    }
    case 'http': {
      const base = service('http.sh', 'HTTP_BACKEND_URL').replace(/\/+$/, '');
      const dir = `bench-${randomBytes(4).toString('hex')}`;
      return {
        config: { type: 'http', http: { urlTemplate: `${base}/${dir}/{name}`, write: true } },
        repo: 'bench/http',
      };
    }
    case 'registry': {
      const url = service('upstream-registry.sh', 'UPSTREAM_REGISTRY');
      const auth = Buffer.from('shoal:shoal-upstream').toString('base64');
      const repo = `bench/r${randomBytes(3).toString('hex')}`;
      return {
        config: {
          type: 'registry',
          registry: { url, username: 'shoal', password: 'shoal-upstream' },
        },
        repo,
        seed: (blob) => seedUpstream(url, auth, repo, blob),
      };
    }
    default:
      throw new Error(`unknown backend "${type}"`);
  }
};

type Blob = { path: string; size: number; digest: Digest };

const runBackend = async (
  type: string,
  blob: Blob,
  work: string,
  watch: ReturnType<typeof rssWatch>,
): Promise<Row> => {
  const dir = mkdtempSync(join(work, `${type}-`));
  openDataDir(dir, { create: true });
  const setup = await backendConfigOf(type, work);
  const readOnly = type === 'registry';
  const config = validateConfig(OriginConfigSchema, {
    id: 'bench',
    dataDir: dir,
    listen: { port: 0 },
    replicas: 1,
    writeBack: { quietMs: 0 },
    // The registry is read-only: it serves one namespace; the rest goes to local disk.
    ...(readOnly
      ? { backends: [{ namespace: 'bench/.*', backend: setup.config }] }
      : { backend: setup.config }),
  });
  const log = createMemoryEventLog();
  const start = () =>
    startOrigin({
      config,
      logger: silentLogger(),
      clock: systemClock,
      log,
      store: createMemoryProjectionStore(),
      ...createOriginBackends(config, dir),
    });
  let origin = await start();
  let client = createOriginClient(origin.url);
  let writeBack: Phase | undefined;
  if (readOnly) {
    await setup.seed?.({ ...blob, path: blob.path }).catch((error: unknown) => {
      throw new Error(`seeding the upstream failed: ${String(error)}`);
    });
  } else {
    const { id } = await client.startUpload({ repo: setup.repo });
    await client.appendUpload(id, createReadStream(blob.path), { length: blob.size });
    const persisted = firstValueFrom(
      log.subscribe(1).pipe(
        filter((e) => e.type === 'BlobPersisted' && e.data.digest === blob.digest),
        timeout(30 * 60_000),
      ),
    );
    await client.commitUpload(id, { digest: blob.digest, repo: setup.repo });
    writeBack = await timed(watch, blob.size, async () => void (await persisted));
  }
  await client.close();
  await origin.close();
  rmSync(join(origin.directory, 'blobs'), { recursive: true, force: true });
  origin = await start();
  client = createOriginClient(origin.url);
  const fetch = await timed(watch, blob.size, async () => {
    const read = await client.getBlob(blob.digest, { repo: setup.repo });
    const hash = createHash('sha256');
    for await (const chunk of read.stream) hash.update(chunk as Buffer);
    if (`sha256:${hash.digest('hex')}` !== blob.digest) throw new Error(`${type}: wrong bytes`);
  });
  await client.close();
  await origin.close();
  await log.close();
  rmSync(dir, { recursive: true, force: true });
  return { backend: type, size: blob.size, ...(writeBack && { writeBack }), fetch };
};

const main = async () => {
  const large = parseSize(args.size);
  const small = parseSize(args.small);
  const types = args.backends
    .split(',')
    .map((t) => t.trim())
    .filter(Boolean);
  const work = mkdtempSync(join(tmpdir(), 'shoal-bench-backends-'));
  const watch = rssWatch();
  try {
    say(`generating ${small / MiB} MiB and ${large / MiB} MiB blobs in ${work}…`);
    const blobs = [await makeBlob(work, small), await makeBlob(work, large)];
    const big = blobs[1] as Blob;
    const cpStart = performance.now();
    const copied = spawnSync('cp', [big.path, join(work, 'cp-baseline')]);
    if (copied.status !== 0) throw new Error('cp baseline failed');
    spawnSync('sync');
    const cpSeconds = (performance.now() - cpStart) / 1000;
    rmSync(join(work, 'cp-baseline'));
    const cpMiBs = big.size / MiB / cpSeconds;
    say(`baseline: cp of ${big.size / MiB} MiB on this disk: ${cpMiBs.toFixed(0)} MiB/s`);
    const rows: Row[] = [];
    for (const type of types) {
      for (const blob of blobs) {
        say(`${type}: ${blob.size / MiB} MiB… (load ${loadavg()[0]?.toFixed(1)})`);
        const row = await runBackend(type, blob, work, watch);
        rows.push(row);
        const wb = row.writeBack;
        say(
          `  write-back ${wb ? `${wb.mibPerS} MiB/s (${wb.seconds} s, peak RSS +${wb.peakRssMiB} MiB)` : 'n/a (read-only)'}` +
            `; fetch ${row.fetch.mibPerS} MiB/s (${row.fetch.seconds} s, peak RSS +${row.fetch.peakRssMiB} MiB)`,
        );
      }
    }
    const summary = types.map((type) => {
      const [s, l] = rows.filter((r) => r.backend === type) as [Row, Row];
      const growth = Math.max(
        (l.writeBack?.peakRssMiB ?? 0) - (s.writeBack?.peakRssMiB ?? 0),
        l.fetch.peakRssMiB - s.fetch.peakRssMiB,
      );
      return {
        backend: type,
        write_back_mib_s: l.writeBack?.mibPerS ?? null,
        fetch_mib_s: l.fetch.mibPerS,
        write_back_vs_cp: l.writeBack ? Number((l.writeBack.mibPerS / cpMiBs).toFixed(2)) : null,
        fetch_vs_cp: Number((l.fetch.mibPerS / cpMiBs).toFixed(2)),
        peak_rss_small_mib: Math.max(s.writeBack?.peakRssMiB ?? 0, s.fetch.peakRssMiB),
        peak_rss_large_mib: Math.max(l.writeBack?.peakRssMiB ?? 0, l.fetch.peakRssMiB),
        memory_flat: growth < 64,
      };
    });
    if (args.json) {
      process.stdout.write(
        `${JSON.stringify({ size: large, small, cp_mib_s: Number(cpMiBs.toFixed(1)), load: loadavg()[0], backends: summary })}\n`,
      );
    } else {
      say('');
      say(
        `backend      write-back MiB/s  fetch MiB/s  vs cp (wb/fetch)  peak RSS ${small / MiB} MiB → ${large / MiB} MiB`,
      );
      for (const s of summary) {
        say(
          `${s.backend.padEnd(12)} ${String(s.write_back_mib_s ?? 'n/a').padStart(16)}  ${String(s.fetch_mib_s).padStart(11)}  ` +
            `${`${s.write_back_vs_cp ?? '-'} / ${s.fetch_vs_cp}`.padStart(16)}  ` +
            `+${s.peak_rss_small_mib} → +${s.peak_rss_large_mib} MiB ${s.memory_flat ? '(flat)' : '(GROWS)'}`,
        );
      }
    }
  } finally {
    watch.stop();
    rmSync(work, { recursive: true, force: true });
  }
};

main().catch((error: unknown) => {
  process.stderr.write(`bench:backends failed: ${String((error as Error).stack ?? error)}\n`);
  process.exitCode = 1;
});

import { spawn } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { createReadStream, existsSync, mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { request } from 'node:http';
import { join } from 'node:path';
import { pipeline } from 'node:stream/promises';
import type { GeneratedBlob, P2pStatus } from './cluster';
import { fetchBlob, generatedBlob, json, startCluster } from './cluster';
import { MiB, cpuMeter, freePort } from './processes';

/*
 * One pair at full speed: a blob moves from a seeded agent to another with no rate limit,
 * beside the same blob fetched with curl from the CNCF distribution registry (Debian's
 * `docker-registry`, filesystem storage) on loopback, in the same run.
 */

export type PairOptions = {
  readonly dir: string;
  readonly size: number;
  readonly log: (line: string) => void;
  /** The registry binary; the baseline is skipped with a line when it is missing. */
  readonly registryBin?: string;
};

const mb = (bytes: number, seconds: number) => bytes / seconds / 1e6;

export const runPair = async (options: PairOptions) => {
  const { dir, size, log } = options;
  const blob = generatedBlob(`pair-${size}`, size);
  const digest = blob.digest;
  // Origins only while no agent is complete: the second agent gets the first one alone.
  const cluster = await startCluster({
    dir,
    originRate: 0,
    trackerEnv: { SHOAL_ANNOUNCE_ORIGINS_BELOW_COMPLETE: '1' },
  });
  const [seed, leech] = await cluster.startAgents(2, 0);
  if (seed === undefined || leech === undefined) throw new Error('agents did not start');
  await cluster.put(blob);
  // Warm-up: both agents fetch a small blob; the seed then fetches the pair's blob.
  const warmDigest = await cluster.put(randomBytes(4 * MiB));
  await Promise.all([seed, leech].map((a) => fetchBlob(`${a.url}/blobs/${warmDigest}`)));
  const seeded = await fetchBlob(`${seed.url}/blobs/${digest}`);
  if (seeded.digest !== digest) throw new Error('the seed agent got a wrong blob');
  // The seed announces its completion at once; give the announce time to land.
  await new Promise((resolve) => setTimeout(resolve, 1500));

  const agents = cpuMeter([seed.child.pid, leech.child.pid]);
  const others = cpuMeter([cluster.origin.child.pid, cluster.tracker.child.pid]);
  let cpu: ReturnType<typeof agents> | undefined;
  const windowStart = process.hrtime.bigint() / 1000n;
  const fetched = await fetchBlob(`${leech.url}/blobs/${digest}`, () => (cpu = agents()));
  const windowEnd = process.hrtime.bigint() / 1000n;
  if (fetched.digest !== digest) throw new Error('the second agent got a wrong blob');
  const otherCpu = others().total;
  const status = await json<P2pStatus>(`${leech.url}/internal/p2p`);
  const fromOrigin = status.swarms.find((s) => s.digest === digest)?.stats.originBytes ?? 0;
  const seconds = fetched.ms / 1000;
  const shoal = {
    seconds,
    mb_per_s: mb(size, seconds),
    cpu_seconds: cpu?.total ?? NaN,
    cpu_ns_per_byte: ((cpu?.total ?? NaN) * 1e9) / size,
    sender_cpu_seconds: cpu?.each[0],
    receiver_cpu_seconds: cpu?.each[1],
    origin_bytes: fromOrigin,
  };
  if (process.env.SHOAL_BENCH_NODE_ARGS) {
    log(`pair window (monotonic µs, for profiles): ${windowStart} ${windowEnd}`);
  }
  log(
    `Shoal pair: ${(size / MiB).toFixed(0)} MiB from a seeded agent to another, no limit, ` +
      `verified: ${seconds.toFixed(2)} s = ${shoal.mb_per_s.toFixed(0)} MB/s, ` +
      `${shoal.cpu_ns_per_byte.toFixed(2)} ns CPU per byte (sender ` +
      `${(cpu?.each[0] ?? 0).toFixed(2)} s, receiver ${(cpu?.each[1] ?? 0).toFixed(2)} s; ` +
      `tracker and origin ${otherCpu.toFixed(2)} s)` +
      (fromOrigin > 0 ? `; ${(fromOrigin / MiB).toFixed(1)} MiB came from the origin` : ''),
  );

  const registry = await runRegistryBaseline(dir, blob, options.registryBin);
  if (registry === undefined) {
    log(`CNCF registry baseline skipped: ${options.registryBin ?? defaultRegistry} is missing`);
  } else {
    log(
      `CNCF registry + curl: ${registry.seconds.toFixed(2)} s = ` +
        `${registry.mb_per_s.toFixed(0)} MB/s, ${registry.cpu_ns_per_byte.toFixed(2)} ns CPU ` +
        `per byte (registry ${registry.registry_cpu_seconds.toFixed(2)} s, curl ` +
        `${registry.curl_cpu_seconds.toFixed(2)} s; curl does not hash, Shoal checks every piece)`,
    );
    log(`Shoal pair ÷ CNCF registry speed: ${(shoal.mb_per_s / registry.mb_per_s).toFixed(2)}`);
  }
  return { size, shoal, registry };
};

const defaultRegistry = '/usr/bin/docker-registry';

/**
 * The CNCF registry on loopback (no auth, filesystem storage in `dir`), the blob pushed in
 * one monolithic upload, then fetched once to warm up and once timed with curl to a file.
 */
const runRegistryBaseline = async (dir: string, blob: GeneratedBlob, bin = defaultRegistry) => {
  const { digest, size } = blob;
  if (!existsSync(bin)) return undefined;
  const root = join(dir, 'registry');
  mkdirSync(root, { recursive: true });
  const port = await freePort();
  const config = join(root, 'config.yml');
  writeFileSync(
    config,
    [
      'version: 0.1',
      'log: { level: warn, accesslog: { disabled: true } }',
      `storage: { filesystem: { rootdirectory: ${join(root, 'data')} }, ` +
        'cache: { blobdescriptor: inmemory } }',
      `http: { addr: 127.0.0.1:${port}, secret: shoal-bench }`,
      'health: { storagedriver: { enabled: false } }',
    ].join('\n'),
  );
  const server = spawn(bin, ['serve', config], { stdio: ['ignore', 'ignore', 'pipe'] });
  let errors = '';
  server.stderr?.on('data', (d: Buffer) => (errors = (errors + d.toString()).slice(-4000)));
  const base = `http://127.0.0.1:${port}`;
  try {
    const deadline = Date.now() + 30_000;
    while (
      !(await fetch(`${base}/v2/`).then(
        (r) => r.ok,
        () => false,
      ))
    ) {
      if (Date.now() > deadline || server.exitCode !== null) {
        throw new Error(`docker-registry did not start: ${errors}`);
      }
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
    const started = await fetch(`${base}/v2/bench/pair/blobs/uploads/`, { method: 'POST' });
    const location = started.headers.get('location');
    if (started.status !== 202 || location === null) {
      throw new Error(`registry upload: ${started.status} ${await started.text()}`);
    }
    const target = new URL(location, base);
    target.searchParams.set('digest', digest);
    await new Promise<void>((done, fail) => {
      const req = request(
        target,
        {
          method: 'PUT',
          headers: { 'content-type': 'application/octet-stream', 'content-length': size },
        },
        (response) => {
          response.resume();
          response.on('end', () =>
            response.statusCode === 201
              ? done()
              : fail(new Error(`registry upload: ${response.statusCode}`)),
          );
        },
      );
      req.once('error', fail);
      pipeline(blob.open(), req).catch(fail);
    });
    const url = `${base}/v2/bench/pair/blobs/${digest}`;
    const out = join(dir, 'curl.blob');
    await curl(url, out); // warm-up
    const registryCpu = cpuMeter([server.pid]);
    const timed = await curl(url, out);
    const registrySeconds = registryCpu().total;
    const check = await sha256File(out);
    rmSync(out, { force: true });
    if (check !== digest) throw new Error('curl got a wrong blob from the registry');
    return {
      seconds: timed.seconds,
      mb_per_s: mb(size, timed.seconds),
      cpu_ns_per_byte: ((registrySeconds + timed.cpuSeconds) * 1e9) / size,
      registry_cpu_seconds: registrySeconds,
      curl_cpu_seconds: timed.cpuSeconds,
    };
  } finally {
    server.kill('SIGTERM');
    await new Promise((resolve) => server.once('exit', resolve));
  }
};

/** `curl -o out url`, timed; curl's CPU read from its shell's cutime/cstime once it was reaped. */
const curl = (url: string, out: string) =>
  new Promise<{ seconds: number; cpuSeconds: number }>((done, fail) => {
    const t0 = performance.now();
    const shell = spawn('bash', ['-c', 'curl -sf -o "$0" "$1" && cat /proc/$$/stat', out, url], {
      stdio: ['ignore', 'pipe', 'ignore'],
    });
    let stat = '';
    shell.stdout.on('data', (d: Buffer) => (stat += d.toString()));
    shell.once('error', fail);
    shell.once('exit', (code) => {
      const seconds = (performance.now() - t0) / 1000;
      const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      if (code !== 0 || fields.length < 15) {
        fail(new Error(`curl ${url} failed (${code})`));
        return;
      }
      done({ seconds, cpuSeconds: (Number(fields[13]) + Number(fields[14])) / 100 });
    });
  });

const sha256File = async (path: string): Promise<string> => {
  const hash = createHash('sha256');
  for await (const chunk of createReadStream(path, { highWaterMark: MiB })) {
    hash.update(chunk as Buffer);
  }
  return `sha256:${hash.digest('hex')}`;
};

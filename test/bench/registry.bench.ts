/**
 * `npm run bench:registry [-- --size 1GiB --layers 5 --rounds 3 --json]`: push and pull one
 * generated image with skopeo through Shoal's proxy (`shoal dev`) and through the CNCF
 * registry (`/usr/bin/docker-registry`, filesystem storage on loopback), in the same run.
 *
 * Each round generates a fresh image (random layers, so neither registry nor skopeo's blob
 * cache has seen it), pushes it to both registries and pulls it back from both, alternating
 * which goes first. Prints the time of each step, the medians and the ratios Shoal/CNCF for
 * push and pull (aim: ≤ 1.0). Needs `npm run build` and `test/services/tools.sh install`.
 *
 * Shoal acknowledges a push once the blobs are durable on its origin and writes them back to
 * the storage backend afterwards. Before each timed step the bench waits until that queue is
 * empty, so background work never lands in the next step's time (CNCF's or Shoal's own);
 * how long the write-back took after each push is printed beside it. The load average at
 * each round is printed too: the machine may be shared, so compare ratios, not seconds.
 */
import { spawn, spawnSync } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { loadavg, tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { generateImage } from '../fixtures/images';

const { values: args } = parseArgs({
  options: {
    size: { type: 'string', default: '1GiB' },
    layers: { type: 'string', default: '5' },
    rounds: { type: 'string', default: '3' },
    json: { type: 'boolean', default: false },
  },
});

const parseSize = (text: string): number => {
  const m = /^(\d+(?:\.\d+)?)\s*(B|KiB|MiB|GiB|K|M|G)?$/i.exec(text.trim());
  if (m === null) throw new Error(`--size: want e.g. 1GiB, 256MiB; got "${text}"`);
  const unit = (m[2] ?? 'B').toUpperCase().replace('IB', '');
  const factor = { B: 1, K: 1024, M: 1024 ** 2, G: 1024 ** 3 }[unit] ?? 1;
  return Math.round(Number(m[1]) * factor);
};

const root = resolve(__dirname, '../../..');
const cli = join(root, 'dist/services/cli/main.js');
const skopeo = '/usr/bin/skopeo';
const cncf = '/usr/bin/docker-registry';

const freePort = (): Promise<number> =>
  new Promise((done, fail) => {
    const server = createServer();
    server.once('error', fail);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as { port: number };
      server.close(() => done(port));
    });
  });

/** Starts a process and waits until `ready` answers (polled), or fails with its output. */
const startProcess = async (
  command: string,
  argv: string[],
  ready: () => Promise<boolean>,
): Promise<ChildProcess> => {
  const child = spawn(command, argv, { stdio: ['ignore', 'pipe', 'pipe'] });
  let output = '';
  child.stdout?.on('data', (d: Buffer) => (output = (output + d.toString()).slice(-8000)));
  child.stderr?.on('data', (d: Buffer) => (output = (output + d.toString()).slice(-8000)));
  const deadline = Date.now() + 30_000;
  while (Date.now() < deadline) {
    if (child.exitCode !== null) throw new Error(`${command} exited:\n${output}`);
    if (await ready().catch(() => false)) return child;
    await new Promise((r) => setTimeout(r, 100));
  }
  child.kill('SIGKILL');
  throw new Error(`${command} did not start in 30 s:\n${output}`);
};

const answers = (url: string) => async () => (await fetch(url)).status === 200;

const stop = (child: ChildProcess) =>
  new Promise<void>((done) => {
    if (child.exitCode !== null || child.signalCode !== null) return done();
    child.once('exit', () => done());
    child.kill('SIGTERM');
  });

const timed = (argv: string[]): number => {
  const started = process.hrtime.bigint();
  const result = spawnSync(skopeo, argv, { encoding: 'utf8', maxBuffer: 16 * 1024 * 1024 });
  const seconds = Number(process.hrtime.bigint() - started) / 1e9;
  if (result.status !== 0) {
    throw new Error(`skopeo ${argv.join(' ')} failed:\n${result.stdout}${result.stderr}`);
  }
  return seconds;
};

/** Write-back and replication jobs queued on an origin, from its metrics. */
const pendingJobs = async (origin: string): Promise<number> => {
  const text = await (await fetch(`${origin}/metrics`)).text();
  let pending = 0;
  for (const m of text.matchAll(/^shoal_origin_jobs_pending\{[^}]*\} (\d+)$/gm)) {
    pending += Number(m[1]);
  }
  return pending;
};

/** Waits until no origin has queued jobs; resolves with the seconds it took. */
const drained = async (origins: readonly string[], timeoutMs = 300_000): Promise<number> => {
  const started = process.hrtime.bigint();
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const counts = await Promise.all(origins.map(pendingJobs));
    if (counts.every((n) => n === 0)) return Number(process.hrtime.bigint() - started) / 1e9;
    if (Date.now() > deadline) throw new Error(`origins still have ${counts} jobs queued`);
    await new Promise((r) => setTimeout(r, 100));
  }
};

/** Same-round ratios, which a shared machine's swings affect less than the medians. */
const ratios = (shoal: number[], cncf: number[]) =>
  shoal.map((s, i) => (s / (cncf[i] ?? Number.NaN)).toFixed(2)).join(', ');

const load = () =>
  loadavg()
    .map((l) => l.toFixed(2))
    .join(' ');

const median = (values: number[]) => {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = Math.floor(sorted.length / 2);
  return sorted.length % 2 === 1
    ? (sorted[mid] as number)
    : ((sorted[mid - 1] as number) + (sorted[mid] as number)) / 2;
};

const main = async () => {
  for (const [path, hint] of [
    [cli, 'npm run build'],
    [skopeo, 'test/services/tools.sh install'],
    [cncf, 'test/services/tools.sh install'],
  ] as const) {
    if (!existsSync(path)) throw new Error(`missing ${path}: run \`${hint}\``);
  }
  const totalSize = parseSize(args.size);
  const layers = Number(args.layers);
  const rounds = Number(args.rounds);
  const work = mkdtempSync(join(tmpdir(), 'shoal-bench-registry-'));
  const children: ChildProcess[] = [];
  try {
    const base = await freePort();
    const shoal = await startProcess(
      process.execPath,
      [cli, 'dev', '--data-dir', join(work, 'shoal'), '--port-base', String(base)],
      // Ready once it wrote endpoints.json (the last step of starting) and the proxy answers.
      async () =>
        existsSync(join(work, 'shoal', 'endpoints.json')) &&
        (await answers(`http://127.0.0.1:${base}/v2/`)()),
    );
    children.push(shoal);
    const endpoints = JSON.parse(readFileSync(join(work, 'shoal', 'endpoints.json'), 'utf8')) as {
      origins: string[];
    };
    const cncfPort = await freePort();
    const config = join(work, 'cncf.yml');
    writeFileSync(
      config,
      [
        'version: 0.1',
        'log: { level: error, accesslog: { disabled: true } }',
        'storage:',
        `  filesystem: { rootdirectory: ${join(work, 'cncf')} }`,
        '  delete: { enabled: true }',
        `http: { addr: "127.0.0.1:${cncfPort}" }`,
        '',
      ].join('\n'),
    );
    const registry = await startProcess(
      cncf,
      ['serve', config],
      answers(`http://127.0.0.1:${cncfPort}/v2/`),
    );
    children.push(registry);
    const targets = { shoal: `127.0.0.1:${base}`, cncf: `127.0.0.1:${cncfPort}` } as const;
    type Name = keyof typeof targets;
    const times: Record<Name, { push: number[]; pull: number[] }> = {
      shoal: { push: [], pull: [] },
      cncf: { push: [], pull: [] },
    };
    const writeBack: number[] = [];
    const loads: string[] = [];
    /** Before a timed step: Shoal's background work from the previous one is over. */
    const quiet = async (after?: 'push') => {
      const seconds = await drained(endpoints.origins);
      if (after === 'push') writeBack.push(seconds);
      return seconds;
    };
    const log = (line: string) => {
      if (!args.json) process.stderr.write(`${line}\n`);
    };
    log(
      `image: ${layers} layers, ${(totalSize / 1024 ** 2).toFixed(0)} MiB in total; ` +
        `${rounds} rounds; shoal ${targets.shoal}, cncf ${targets.cncf}`,
    );
    for (let round = 1; round <= rounds; round++) {
      const dir = join(work, `image-${round}`);
      const image = await generateImage({
        dir,
        layers,
        layerSize: Math.ceil(totalSize / layers),
        gzipLevel: 0,
      });
      const order: Name[] = round % 2 === 1 ? ['shoal', 'cncf'] : ['cncf', 'shoal'];
      const repo = `bench/app-${round}`;
      loads.push(load());
      log(`round ${round}: load average ${load()}`);
      for (const name of order) {
        await quiet();
        const seconds = timed([
          '--insecure-policy',
          'copy',
          '--dest-tls-verify=false',
          image.layoutRef,
          `docker://${targets[name]}/${repo}:v1`,
        ]);
        times[name].push.push(seconds);
        const drain =
          name === 'shoal' ? `; write-back done ${(await quiet('push')).toFixed(2)} s later` : '';
        log(`round ${round}: push ${name.padEnd(5)} ${seconds.toFixed(2)} s${drain}`);
      }
      for (const name of order) {
        await quiet();
        const out = join(work, `pull-${name}-${round}`);
        const seconds = timed([
          '--insecure-policy',
          'copy',
          '--src-tls-verify=false',
          `docker://${targets[name]}/${repo}:v1`,
          `oci:${out}:v1`,
        ]);
        times[name].pull.push(seconds);
        log(`round ${round}: pull ${name.padEnd(5)} ${seconds.toFixed(2)} s`);
        rmSync(out, { recursive: true, force: true });
      }
      rmSync(dir, { recursive: true, force: true });
    }
    const summary = {
      sizeBytes: totalSize,
      layers,
      rounds,
      medianSeconds: {
        shoal: { push: median(times.shoal.push), pull: median(times.shoal.pull) },
        cncf: { push: median(times.cncf.push), pull: median(times.cncf.pull) },
      },
      ratio: {
        push: median(times.shoal.push) / median(times.cncf.push),
        pull: median(times.shoal.pull) / median(times.cncf.pull),
      },
      times,
      writeBackSeconds: writeBack,
      loadAverages: loads,
    };
    if (args.json) {
      process.stdout.write(`${JSON.stringify(summary)}\n`);
    } else {
      const mbps = (seconds: number) => (totalSize / 1024 ** 2 / seconds).toFixed(0);
      const m = summary.medianSeconds;
      process.stdout.write(
        [
          `median push: shoal ${m.shoal.push.toFixed(2)} s (${mbps(m.shoal.push)} MiB/s), ` +
            `cncf ${m.cncf.push.toFixed(2)} s (${mbps(m.cncf.push)} MiB/s)`,
          `median pull: shoal ${m.shoal.pull.toFixed(2)} s (${mbps(m.shoal.pull)} MiB/s), ` +
            `cncf ${m.cncf.pull.toFixed(2)} s (${mbps(m.cncf.pull)} MiB/s)`,
          `ratio shoal/cncf: push ${summary.ratio.push.toFixed(2)}, ` +
            `pull ${summary.ratio.pull.toFixed(2)} (aim: <= 1.0)`,
          `per-round ratios: push ${ratios(times.shoal.push, times.cncf.push)}; ` +
            `pull ${ratios(times.shoal.pull, times.cncf.pull)}`,
          `shoal write-back after each push (not in the push time): ` +
            `${writeBack.map((s) => s.toFixed(2)).join(', ')} s`,
          '',
        ].join('\n'),
      );
    }
  } finally {
    for (const child of children.reverse()) await stop(child);
    rmSync(work, { recursive: true, force: true });
  }
};

main().catch((error: unknown) => {
  process.stderr.write(`bench:registry failed: ${(error as Error).stack ?? String(error)}\n`);
  process.exitCode = 1;
});

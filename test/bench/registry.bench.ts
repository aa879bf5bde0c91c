/**
 * `npm run bench:registry [-- --size 1GiB --layers 5 --rounds 3 --json --plain]`: push and pull
 * one generated image with skopeo through Shoal's proxy (`shoal dev --secure`) and through the
 * CNCF registry (`/usr/bin/docker-registry`, filesystem storage on loopback), in the same run.
 *
 * Both run as production would: TLS (the dev cluster's CA; the CNCF registry serves the
 * proxy's certificate from it) and logins (Shoal's admin, with its token flow; an htpasswd
 * user at the CNCF registry, as `htpasswd -B` writes it), skopeo checking the CA and sending
 * credentials. `--plain`: both on plain HTTP without authentication.
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
import { execFileSync, spawn, spawnSync } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { request as httpRequest } from 'node:http';
import { request as httpsRequest } from 'node:https';
import { loadavg, tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { generateImage } from '../fixtures/images';
import { benchArgs } from './args';
import { freePort } from '../fixtures/ports';

const args = benchArgs(
  'bench:registry',
  {
    size: { type: 'string', default: '1GiB' },
    layers: { type: 'string', default: '5' },
    rounds: { type: 'string', default: '3' },
    json: { type: 'boolean', default: false },
    plain: { type: 'boolean', default: false },
  },
  `usage: npm run bench:registry -- [--size 1GiB] [--layers 5] [--rounds 3] [--plain] [--json]
Push and pull one generated image with skopeo through Shoal (shoal dev --secure) and the CNCF
registry, TLS and logins on both (--plain: neither); prints medians and the ratios.`,
);

const parseSize = (text: string): number => {
  const m = /^(\d+(?:\.\d+)?)\s*(B|KiB|MiB|GiB|K|M|G)?$/i.exec(text.trim());
  if (m === null) throw new Error(`--size: want e.g. 1GiB, 256MiB; got "${text}"`);
  const unit = (m[2] ?? 'B').toUpperCase().replace('IB', '');
  const factor = { B: 1, K: 1024, M: 1024 ** 2, G: 1024 ** 3 }[unit] ?? 1;
  return Math.round(Number(m[1]) * factor);
};

type Name = 'shoal' | 'cncf';

const root = resolve(__dirname, '../../..');
const cli = join(root, 'dist/services/cli/main.js');
const skopeo = '/usr/bin/skopeo';
const cncf = '/usr/bin/docker-registry';

/** Starts a process and waits until `ready` answers (polled), or fails with its output. */
const startProcess = async (
  command: string,
  argv: string[],
  ready: () => Promise<boolean>,
): Promise<{ child: ChildProcess; output: () => string }> => {
  const child = spawn(command, argv, { stdio: ['ignore', 'pipe', 'pipe'] });
  let output = '';
  child.stdout?.on('data', (d: Buffer) => (output = (output + d.toString()).slice(-8000)));
  child.stderr?.on('data', (d: Buffer) => (output = (output + d.toString()).slice(-8000)));
  const deadline = Date.now() + 30_000;
  while (Date.now() < deadline) {
    if (child.exitCode !== null) throw new Error(`${command} exited:\n${output}`);
    if (await ready().catch(() => false)) return { child, output: () => output };
    await new Promise((r) => setTimeout(r, 100));
  }
  child.kill('SIGKILL');
  throw new Error(`${command} did not start in 30 s:\n${output}`);
};

/** GET over http or https (trusting `ca` when given): the status and body. */
const get = (url: string, ca?: Buffer): Promise<{ status: number; body: string }> =>
  new Promise((done, fail) => {
    const send = url.startsWith('https:') ? httpsRequest : httpRequest;
    const req = send(url, { ...(ca !== undefined && { ca }) }, (res) => {
      let body = '';
      res.on('data', (d: Buffer) => (body += d.toString()));
      res.on('end', () => done({ status: res.statusCode ?? 0, body }));
      res.on('error', fail);
    });
    req.on('error', fail);
    req.end();
  });

/** Up: it answers (a 401 too: the registry asks for a login). */
const answers = (url: string, ca?: Buffer) => async () => {
  const { status } = await get(url, ca);
  return status === 200 || status === 401;
};

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
const pendingJobs = async (origin: string, ca?: Buffer): Promise<number> => {
  const text = (await get(`${origin}/metrics`, ca)).body;
  let pending = 0;
  for (const m of text.matchAll(/^shoal_origin_jobs_pending\{[^}]*\} (\d+)$/gm)) {
    pending += Number(m[1]);
  }
  return pending;
};

/** Waits until no origin has queued jobs; resolves with the seconds it took. */
const drained = async (
  origins: readonly string[],
  ca?: Buffer,
  timeoutMs = 300_000,
): Promise<number> => {
  const started = process.hrtime.bigint();
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const counts = await Promise.all(origins.map((origin) => pendingJobs(origin, ca)));
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
    const secure = !args.plain;
    const base = await freePort();
    const shoalDir = join(work, 'shoal');
    const certs = join(shoalDir, 'certs');
    const ca = () => readFileSync(join(certs, 'ca.crt'));
    const scheme = secure ? 'https' : 'http';
    const shoal = await startProcess(
      process.execPath,
      [
        cli,
        'dev',
        '--data-dir',
        shoalDir,
        '--port-base',
        String(base),
        ...(secure ? ['--secure'] : []),
      ],
      // Ready once it wrote endpoints.json (the last step of starting) and the proxy answers.
      async () =>
        existsSync(join(shoalDir, 'endpoints.json')) &&
        (await answers(`${scheme}://127.0.0.1:${base}/v2/`, secure ? ca() : undefined)()),
    );
    children.push(shoal.child);
    const trust = secure ? ca() : undefined;
    const endpoints = JSON.parse(readFileSync(join(shoalDir, 'endpoints.json'), 'utf8')) as {
      origins: string[];
    };
    // The dev cluster's admin and the password it printed.
    const shoalLogin = secure ? /\blogin\s+(\S+) \/ (\S+)/.exec(shoal.output()) : null;
    if (secure && shoalLogin === null) {
      throw new Error(`shoal dev --secure printed no login:\n${shoal.output()}`);
    }
    const cncfPort = await freePort();
    const config = join(work, 'cncf.yml');
    const cncfPassword = 'bench-secret';
    if (secure) {
      const line = execFileSync('htpasswd', ['-nbB', 'bench', cncfPassword], { encoding: 'utf8' });
      writeFileSync(join(work, 'cncf.htpasswd'), line);
    }
    writeFileSync(
      config,
      [
        'version: 0.1',
        'log: { level: error, accesslog: { disabled: true } }',
        'storage:',
        `  filesystem: { rootdirectory: ${join(work, 'cncf')} }`,
        '  delete: { enabled: true }',
        `http:`,
        `  addr: "127.0.0.1:${cncfPort}"`,
        // The proxy's certificate (for 127.0.0.1, from the same CA): one trust for both.
        ...(secure
          ? [
              `  tls: { certificate: ${join(certs, 'proxy.crt')}, key: ${join(certs, 'proxy.key')} }`,
            ]
          : []),
        ...(secure
          ? [`auth: { htpasswd: { realm: cncf, path: ${join(work, 'cncf.htpasswd')} } }`]
          : []),
        '',
      ].join('\n'),
    );
    const registry = await startProcess(
      cncf,
      ['serve', config],
      answers(`${scheme}://127.0.0.1:${cncfPort}/v2/`, trust),
    );
    children.push(registry.child);
    /** skopeo's flags for one side of a copy: the CA and the login, or plain HTTP. */
    const access = (side: 'src' | 'dest', name: Name): string[] => {
      if (!secure) return [`--${side}-tls-verify=false`];
      const creds =
        name === 'shoal' ? `${shoalLogin?.[1]}:${shoalLogin?.[2]}` : `bench:${cncfPassword}`;
      return [`--${side}-cert-dir`, join(certs, 'client'), `--${side}-creds`, creds];
    };
    const targets = { shoal: `127.0.0.1:${base}`, cncf: `127.0.0.1:${cncfPort}` } as const;
    const times: Record<Name, { push: number[]; pull: number[] }> = {
      shoal: { push: [], pull: [] },
      cncf: { push: [], pull: [] },
    };
    const writeBack: number[] = [];
    const loads: string[] = [];
    /** Before a timed step: Shoal's background work from the previous one is over. */
    const quiet = async (after?: 'push') => {
      const seconds = await drained(endpoints.origins, trust);
      if (after === 'push') writeBack.push(seconds);
      return seconds;
    };
    const log = (line: string) => {
      if (!args.json) process.stderr.write(`${line}\n`);
    };
    log(
      `image: ${layers} layers, ${(totalSize / 1024 ** 2).toFixed(0)} MiB in total; ` +
        `${rounds} rounds; shoal ${targets.shoal}, cncf ${targets.cncf}; ` +
        (secure ? 'TLS and logins on both' : 'plain HTTP, no logins'),
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
          ...access('dest', name),
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
          ...access('src', name),
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
      secure,
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

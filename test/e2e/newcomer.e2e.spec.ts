import { spawnSync } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import type { Service } from '../fixtures/cli';
import { cliPath, shoal, startService, tempDir } from '../fixtures/cli';

// The first hour of a new user (issue 13), case by case, as they would meet it: real
// processes, the built CLI, and the message and exit code each case must give. No case may
// end in a stack trace.

const oras = resolve(__dirname, '../../.tools/bin/oras');
const noStack = (text: string) => expect(text).not.toMatch(/^\s+at .+:\d+:\d+\)?$/m);
const unknownDigest = `sha256:${'1'.repeat(64)}`;

/** Runs a shell pipeline with the built CLI as `$SHOAL`; returns its stderr and statuses. */
const pipeline = (script: string): { stderr: string; statuses: number[] } => {
  const result = spawnSync('bash', ['-c', `${script}; echo "\${PIPESTATUS[@]}" >&3`, 'pipeline'], {
    encoding: 'utf8',
    env: { ...process.env, SHOAL: `${process.execPath} ${cliPath}` },
    stdio: ['ignore', 'pipe', 'pipe', 'pipe'],
    timeout: 60_000,
  });
  const statuses = String(result.output[3] ?? '')
    .trim()
    .split(/\s+/)
    .map(Number);
  return { stderr: result.stderr, statuses };
};

describe('config a newcomer writes', () => {
  const dir = tempDir('shoal-newcomer-config-');
  afterAll(() => dir.cleanup());

  const proxyWith = (yaml: string, env: NodeJS.ProcessEnv = {}) => {
    const file = join(dir.path, 'proxy.yaml');
    writeFileSync(file, yaml);
    return { file, result: shoal(['proxy', '--config', file, '--data-dir', dir.path], env) };
  };

  it('refuses a misspelt key, naming it and the key meant, instead of starting on defaults', () => {
    const { file, result } = proxyWith('listen: { host: 127.0.0.1, prot: 21500 }\norgins: {}\n');
    expect(result.status).toBe(1);
    expect(result.stderr).toContain(`invalid config file ${file}`);
    expect(result.stderr).toContain('listen.prot: unknown key; did you mean `listen.port`?');
    expect(result.stderr).toContain('orgins: unknown key; did you mean `origins`?');
    expect(result.stderr).toMatch(/CONFIG_INVALID/);
    noStack(result.stderr);
  });

  it('lists the allowed values of an enumeration, from the file or a variable', () => {
    const { result } = proxyWith('log: { adapter: kafak }\n');
    expect(result.status).toBe(1);
    expect(result.stderr).toContain(
      'log.adapter: "kafak" is not one of sqlite, kafka, eventstoredb; did you mean `kafka`?',
    );
    const fromEnv = proxyWith('{}\n', { SHOAL_LOG_LEVEL: 'verbose' }).result;
    expect(fromEnv.status).toBe(1);
    expect(fromEnv.stderr).toContain(
      'logLevel: "verbose" (from SHOAL_LOG_LEVEL) is not one of fatal, error, warn',
    );
  });

  it('--help shows each key by YAML path with its default and a readable variable', () => {
    const help = shoal(['agent', '--help']);
    expect(help.status).toBe(0);
    expect(help.stdout).toMatch(/^ {2}listen\.port: 5001$/m);
    expect(help.stdout).toMatch(/^ {6}SHOAL_LISTEN_PORT\b/m);
    expect(help.stdout).toContain('SHOAL_P2P_SCHEDULER_REQUEST_TIMEOUT_PER_MIB_MS');
    expect(help.stdout).not.toContain('MI_BMS');
  });
});

describe('a newcomer beside a running shoal dev', () => {
  const dir = tempDir('shoal-newcomer-');
  const dataDir = join(dir.path, 'data');
  const base = 20000 + Math.floor(Math.random() * 12000);
  let dev: Service;
  let endpoints: { proxy: string; buildIndex: string; agents: string[] };

  beforeAll(async () => {
    dev = await startService(
      ['dev', '--data-dir', dataDir, '--port-base', String(base)],
      /Ctrl-C stops the cluster/,
      {},
      60_000,
    );
    endpoints = JSON.parse(readFileSync(join(dataDir, 'endpoints.json'), 'utf8'));
  }, 90_000);

  afterAll(async () => {
    await dev?.stop();
    dir.cleanup();
  });

  it("prints dev's summary after its start-up logs", () => {
    const output = dev.output();
    const summary = output.indexOf('shoal dev: cluster "default"');
    expect(summary).toBeGreaterThanOrEqual(0);
    // JSON log lines (not a terminal) may come before the summary, not inside or after it.
    expect(output.slice(summary)).not.toMatch(/^\{"level"/m);
    expect(output.slice(summary)).toContain(`proxy        http://127.0.0.1:${base}`);
  });

  it('refuses a second dev on the same data directory, naming the running one', () => {
    const before = readFileSync(join(dataDir, 'endpoints.json'), 'utf8');
    const second = shoal(['dev', '--data-dir', dataDir, '--port-base', String(base + 100)]);
    expect(second.status).toBe(1);
    expect(second.stderr).toMatch(/DATA_DIR_IN_USE/);
    expect(second.stderr).toContain(`pid ${dev.child.pid}`);
    expect(second.stderr).toContain(endpoints.proxy);
    noStack(second.stderr);
    // The running cluster's addresses were not rewritten.
    expect(readFileSync(join(dataDir, 'endpoints.json'), 'utf8')).toBe(before);
  });

  it('names the role and port of a busy port and how far to move --port-base', () => {
    const other = shoal([
      'dev',
      '--data-dir',
      join(dir.path, 'other'),
      '--port-base',
      String(base),
    ]);
    expect(other.status).toBe(1);
    expect(other.stderr).toMatch(/PORT_IN_USE/);
    // Whichever role binds first names itself and its port.
    expect(other.stderr).toMatch(
      /error: [\w-]+ \(port P(\+\d)?\): cannot listen on 127\.0\.0\.1:\d+/,
    );
    expect(other.stderr).toContain(`must be at least 7 away (e.g. --port-base ${base + 7})`);
    noStack(other.stderr);
  });

  it('points `dev --port` at --port-base', () => {
    const result = shoal(['dev', '--port', '6000', '--data-dir', join(dir.path, 'p')]);
    expect(result.status).toBe(1);
    expect(result.stderr).toContain('--port-base 6000');
  });

  it('keeps read commands working on the data directory the cluster owns', () => {
    const tail = shoal(['log', 'tail', '--data-dir', dataDir]);
    expect(tail.status).toBe(0);
    const [header, first] = tail.stdout.split('\n');
    expect(header).toMatch(/^POSITION +TIME +TYPE +STREAM +ACTOR +CLIENT$/);
    // Aligned columns: every field starts where its header does.
    expect(first?.indexOf('OriginJoined')).toBe(header?.indexOf('TYPE'));
    const ring = shoal(['origin', 'ring', '--data-dir', dataDir]);
    expect(ring.stdout).toMatch(/^ID +ADDRESS +JOINED AT\n1 +http:\/\/127\.0\.0\.1:/);
  });

  it('ends quietly when the reader of its output goes away (| head)', () => {
    const tail = pipeline(`$SHOAL log tail --data-dir ${dataDir} | head -1 >/dev/null`);
    expect(tail.stderr).toBe('');
    expect(tail.statuses).toEqual([0, 0]);
    const replay = pipeline(
      `$SHOAL replay --verify --json --data-dir ${dataDir} | head -c1 >/dev/null`,
    );
    // replay --json reports progress as JSON lines on stderr (issue 15): no error among them.
    expect(replay.stderr).not.toMatch(/EPIPE|error/i);
    noStack(replay.stderr);
    expect(replay.statuses[1]).toBe(0);
  });

  it('refuses to take the only origin off the ring, and an id not on it', () => {
    const only = shoal(['origin', 'leave', '1', '--data-dir', dataDir]);
    expect(only.status).toBe(1);
    expect(only.stderr).toContain('origin 1 is the only origin on the ring');
    expect(only.stderr).toContain('--force');
    const unknown = shoal(['origin', 'leave', '9', '--data-dir', dataDir]);
    expect(unknown.status).toBe(1);
    expect(unknown.stderr).toContain('origin "9" is not on the ring (members: 1;');
    expect(unknown.stderr).toMatch(/NAME_UNKNOWN/);
    expect(shoal(['origin', 'ring', '--json', '--data-dir', dataDir]).stdout).toContain('"id":"1"');
  });

  it('refuses a tag on a digest no manifest has, unless --force; --url takes host:port', () => {
    const hostPort = endpoints.buildIndex.replace(/^http:\/\//, '');
    const put = shoal(['tags', 'put', 'demo/app:v1', unknownDigest, '--url', hostPort]);
    expect(put.status).toBe(1);
    expect(put.stderr).toContain(`repository demo/app has no manifest ${unknownDigest}`);
    expect(put.stderr).toContain('--force');
    expect(put.stderr).toMatch(/MANIFEST_UNKNOWN/);
    const forced = shoal([
      'tags',
      'put',
      'demo/app:v1',
      unknownDigest,
      '--url',
      hostPort,
      '--force',
    ]);
    expect(forced.status).toBe(0);
    // A relative --at: the tag exists now, not five minutes ago.
    const now = shoal(['tags', 'get', 'demo/app:v1', '--at', '0s', '--url', hostPort]);
    expect(now.stdout.trim()).toBe(unknownDigest);
    const before = shoal(['tags', 'get', 'demo/app:v1', '--at', '5m ago', '--url', hostPort]);
    expect(before.status).toBe(1);
    expect(before.stderr).toMatch(/TAG_UNKNOWN/);
  });

  it('says what --url should point at when it points at the proxy', () => {
    const result = shoal(['tags', 'ls', 'demo/app', '--url', endpoints.proxy]);
    expect(result.status).toBe(1);
    expect(result.stderr).toContain(
      `${endpoints.proxy} is Shoal's proxy, which does not serve this command: --url takes ` +
        'the address of a build-index',
    );
    const scheme = shoal(['rules', 'ls', '--url', 'ftp://127.0.0.1:1']);
    expect(scheme.stderr).toContain('ftp is not http or https');
  });

  it('says where credentials go when a rule URL carries them', () => {
    const result = shoal([
      'rules',
      'add',
      '--repo',
      'demo/*',
      '--to',
      'https://user:secret@registry.example.com',
      '--data-dir',
      dataDir,
    ]);
    expect(result.status).toBe(1);
    expect(result.stderr).toContain('replication.credentials');
    expect(result.stderr).toContain('SHOAL_REPLICATION_CREDENTIALS');
    expect(result.stderr).toContain('"registry.example.com"');
    expect(result.stderr).toContain('https://***@registry.example.com');
    expect(result.stderr).not.toContain('secret');
  });

  it('shows rules under a header, and the same replication status from --data-dir and --url', () => {
    const add = shoal([
      'rules',
      'add',
      '--name',
      'nowhere',
      '--repo',
      'demo/*',
      '--to',
      'http://127.0.0.1:1',
      '--backfill',
      '--no-wait',
      '--url',
      endpoints.buildIndex,
    ]);
    expect(add.status).toBe(0);
    expect(add.stdout).toMatch(/\nID +NAME +REPOSITORIES +TAGS +DESTINATION +BACKFILL +ADDED\n/);
    expect(shoal(['rules', 'ls', '--data-dir', dataDir]).stdout).toMatch(/^ID +NAME/);

    const local = shoal(['replication', 'status', '--data-dir', dataDir]);
    expect(local.status).toBe(0);
    expect(local.stdout).not.toContain('not-running');
    expect(local.stdout).toMatch(/replicator active/);
    const json = (args: string[]) =>
      JSON.parse(shoal(['replication', 'status', '--json', ...args]).stdout) as {
        replicator: string;
        rules: Array<{ id: string; state: string }>;
      };
    expect(json(['--data-dir', dataDir]).replicator).toBe(
      json(['--url', endpoints.buildIndex]).replicator,
    );
  });

  it('names the tag a rule is stuck on, in human output', async () => {
    // demo/app:v1 points at a digest no origin has (forced above): the rule cannot copy it.
    const deadline = Date.now() + 60_000;
    let status = '';
    while (Date.now() < deadline) {
      status = shoal(['replication', 'status', '--data-dir', dataDir]).stdout;
      if (/is stuck on demo\/app:v1/.test(status)) break;
      await new Promise((r) => setTimeout(r, 1000));
    }
    expect(status).toMatch(
      /rule nowhere-\S+ is stuck on demo\/app:v1 \(position \d+, attempt \d+\)/,
    );
  }, 90_000);

  it('answers oras discover against an agent with UNSUPPORTED pointing at the proxy', () => {
    const proxy = endpoints.proxy.replace(/^http:\/\//, '');
    const agent = endpoints.agents[0]?.replace(/^http:\/\//, '') ?? '';
    const file = join(dir.path, 'note.txt');
    writeFileSync(file, 'hello');
    const push = spawnSync(
      oras,
      ['push', '--plain-http', `${proxy}/demo/note:v1`, 'note.txt:text/plain'],
      { encoding: 'utf8', timeout: 60_000, cwd: dir.path },
    );
    expect(push.stderr).toBe('');
    const result = spawnSync(oras, ['discover', '--plain-http', `${agent}/demo/note:v1`], {
      encoding: 'utf8',
      timeout: 60_000,
    });
    expect(result.status).not.toBe(0);
    expect(`${result.stdout}${result.stderr}`).toMatch(/unsupported/i);
    expect(`${result.stdout}${result.stderr}`).toMatch(/ask the proxy/);
    // The proxy answers it.
    const fromProxy = spawnSync(oras, ['discover', '--plain-http', `${proxy}/demo/note:v1`], {
      encoding: 'utf8',
      timeout: 60_000,
    });
    expect(fromProxy.status).toBe(0);
  });
});

import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { Agent, fetch } from 'undici';
import type { EventLog, RecordedEvent } from '../../domain';
import { createDevSecurity } from '../../services/cli/commands/devSecurity';
import { silentLogger } from '../../services/shared/logger';
import type { RoleSecurity } from '../../services/shared/security/roleSecurity';
import type { RunningProxy } from '../../services/proxy/main';
import { openSqliteEventLog } from '../../adapters/eventlog';
import { openDataDir } from '../../services/shared/dataDir';
import { startAuthProxy } from '../fixtures/authProxy';
import { shoalAsync, tempDir } from '../fixtures/cli';
import type { Containerd } from '../fixtures/containerd';
import { startContainerd } from '../fixtures/containerd';
import type { GeneratedImage } from '../fixtures/images';
import { generateImage } from '../fixtures/images';
import type { ToolResult } from '../fixtures/processes';
import { runToolAsync } from '../fixtures/processes';

// Real registry clients log in to a proxy with access required and push and pull through it,
// following the Bearer challenge to the proxy's token endpoint: skopeo, crane, oras and
// containerd (ctr --user). Each client keeps its credentials in a file of the test's own.
// Over TLS (a cluster CA the clients are given: none is told to skip verification), and
// over plain HTTP on loopback.

const root = resolve(__dirname, '../..');
const tools = {
  skopeo: '/usr/bin/skopeo',
  crane: join(root, '.tools/bin/crane'),
  oras: join(root, '.tools/bin/oras'),
};
const users = { alice: 'alice-secret', bob: 'bob-secret', reader: 'reader-secret' };
type User = keyof typeof users;

/** How clients reach the proxy: their flags for it. */
type Transport = {
  readonly name: string;
  /** The proxy's TLS and cluster identities, made under `dir`; none: plain HTTP. */
  readonly secure: boolean;
};

type ClientFlags = {
  skopeoLogin: string[];
  skopeoDest: string[];
  skopeoSrc: string[];
  skopeoDelete: string[];
  crane: string[];
  craneEnv: Record<string, string>;
  oras: string[];
  /** For `ctr images pull` of `host` (a registry on loopback is plain HTTP to it by default). */
  ctr: (host: string) => string[];
};

const plainFlags: ClientFlags = {
  skopeoLogin: ['--tls-verify=false'],
  skopeoDest: ['--dest-tls-verify=false'],
  skopeoSrc: ['--src-tls-verify=false'],
  skopeoDelete: ['--tls-verify=false'],
  crane: ['--insecure'],
  craneEnv: {},
  oras: ['--plain-http'],
  ctr: () => ['--plain-http'],
};

/** Clients trusting the cluster CA: `certDir` holds it as ca.crt (skopeo), `caFile` is it. */
const tlsFlags = (caFile: string, certDir: string): ClientFlags => ({
  skopeoLogin: ['--cert-dir', certDir],
  skopeoDest: ['--dest-cert-dir', certDir],
  skopeoSrc: ['--src-cert-dir', certDir],
  skopeoDelete: ['--cert-dir', certDir],
  crane: [],
  craneEnv: { SSL_CERT_FILE: caFile },
  oras: ['--ca-file', caFile],
  // containerd's way: a hosts.toml that names the registry https and its CA.
  ctr: (host) => {
    const hosts = join(certDir, 'hosts.d');
    mkdirSync(join(hosts, host), { recursive: true });
    writeFileSync(
      join(hosts, host, 'hosts.toml'),
      [
        `server = "https://${host}"`,
        `[host."https://${host}"]`,
        '  capabilities = ["pull", "resolve"]',
        `  ca = "${caFile}"`,
      ].join('\n'),
    );
    return ['--hosts-dir', hosts];
  },
});

const transports: Transport[] = [
  { name: 'TLS', secure: true },
  { name: 'plain HTTP', secure: false },
];

describe.each(transports)('registry clients log in to the proxy ($name)', ({ secure }) => {
  let dir: ReturnType<typeof tempDir>;
  let proxy: RunningProxy;
  let log: EventLog;
  let dataDir: string;
  let host: string;
  let images: GeneratedImage[];
  let containerd: Containerd | undefined;
  let security: RoleSecurity | undefined;
  let flags: ClientFlags = plainFlags;
  let dispatcher: Agent | undefined;
  const team = `team-${randomBytes(3).toString('hex')}`;

  beforeAll(async () => {
    const missing = Object.values(tools).filter((path) => !existsSync(path));
    if (missing.length > 0) {
      throw new Error(`missing ${missing.join(', ')}: run test/services/tools.sh install`);
    }
    dir = tempDir('shoal-login-e2e-');
    // The log of a data directory, so `shoal tags history` and `shoal log tail` read it.
    dataDir = join(dir.path, 'data');
    if (secure) {
      const dev = createDevSecurity(join(dir.path, 'cluster'), '127.0.0.1', silentLogger());
      security = dev.of('proxy');
      flags = tlsFlags(dev.certs.caFile, dev.clientCertDir);
      dispatcher = new Agent({ connect: { ca: readFileSync(dev.certs.caFile) } });
    }
    ({ proxy, log } = await startAuthProxy({
      ...(security !== undefined && { security }),
      dir: dir.path,
      users,
      log: openSqliteEventLog(openDataDir(dataDir, { create: true }).logPath),
      auth: {
        groups: { dev: ['alice', 'bob'] },
        policies: [
          { repositories: [`${team}/shared`], users: ['bob'], actions: ['overwrite'] },
          { repositories: [`${team}/**`], groups: ['dev'], actions: ['pull', 'push'] },
          { repositories: [`${team}/**`], users: ['alice'], actions: ['overwrite', 'delete'] },
          { repositories: [`${team}/**`], users: ['reader'], actions: ['pull'] },
        ],
        failedLogins: { delayMs: 50 },
      },
    }));
    expect(proxy.url.startsWith(secure ? 'https://' : 'http://')).toBe(true);
    host = proxy.url.replace(/^https?:\/\//, '');
    images = await Promise.all(
      [1, 2].map((n) =>
        generateImage({ dir: join(dir.path, `image-${n}`), layers: 2, layerSize: 256 * 1024 }),
      ),
    );
  });

  afterAll(async () => {
    await containerd?.stop();
    await proxy?.close();
    await log?.close();
    security?.close();
    await dispatcher?.close();
    dir?.cleanup();
  });

  /** Where a user's clients keep their logins. */
  const authDir = (user: User | 'nobody') => {
    const path = join(dir.path, 'auth', user);
    mkdirSync(path, { recursive: true });
    return path;
  };
  const ok = (result: ToolResult, what: string) => {
    if (result.status !== 0) throw new Error(`${what} failed:\n${result.stdout}${result.stderr}`);
    return result.stdout;
  };

  const skopeo = (user: User | 'nobody', ...args: string[]) =>
    runToolAsync(tools.skopeo, [
      '--insecure-policy',
      ...args.slice(0, 1),
      '--authfile',
      join(authDir(user), 'auth.json'),
      ...args.slice(1),
    ]);
  const skopeoLogin = async (user: User) =>
    ok(
      await runToolAsync(
        tools.skopeo,
        [
          'login',
          ...flags.skopeoLogin,
          '--authfile',
          join(authDir(user), 'auth.json'),
          '-u',
          user,
          '--password-stdin',
          host,
        ],
        { input: users[user] },
      ),
      `skopeo login ${user}`,
    );
  const push = (user: User | 'nobody', image: GeneratedImage, ref: string) =>
    skopeo(user, 'copy', ...flags.skopeoDest, image.layoutRef, `docker://${host}/${ref}`);

  const crane = (user: User, ...args: string[]) =>
    runToolAsync(tools.crane, [...args, ...flags.crane], {
      env: { DOCKER_CONFIG: authDir(user), ...flags.craneEnv },
    });
  const oras = (user: User, ...args: string[]) =>
    runToolAsync(tools.oras, [
      ...args,
      ...flags.oras,
      '--registry-config',
      join(authDir(user), 'oras.json'),
    ]);

  it('refuses a push without credentials: 401 with the Bearer challenge', async () => {
    const refused = await push('nobody', images[0] as GeneratedImage, `${team}/app:v1`);
    expect(refused.status).not.toBe(0);
    expect(refused.stderr).toMatch(/\b401\b|unauthorized|authentication required/i);
    const response = await fetch(`${proxy.url}/v2/${team}/app/blobs/uploads/`, {
      method: 'POST',
      ...(dispatcher !== undefined && { dispatcher }),
    });
    expect(response.status).toBe(401);
    expect(response.headers.get('www-authenticate')).toBe(
      `Bearer realm="${proxy.url}/auth/token",service="shoal",` +
        `scope="repository:${team}/app:pull,push"`,
    );
  });

  it('skopeo logs in, pushes and pulls back the same image', async () => {
    const image = images[0] as GeneratedImage;
    await skopeoLogin('bob');
    ok(await push('bob', image, `${team}/skopeo:v1`), 'skopeo copy (push)');
    const out = join(dir.path, 'pulled-skopeo');
    ok(
      await skopeo(
        'bob',
        'copy',
        ...flags.skopeoSrc,
        `docker://${host}/${team}/skopeo:v1`,
        `oci:${out}:v1`,
      ),
      'skopeo copy (pull)',
    );
    const index = JSON.parse(readFileSync(join(out, 'index.json'), 'utf8')) as {
      manifests: Array<{ digest: string }>;
    };
    expect(index.manifests[0]?.digest).toBe(image.top.digest);
  });

  it('crane logs in, copies between repositories, lists and reads digests', async () => {
    ok(
      await crane('alice', 'auth', 'login', host, '-u', 'alice', '-p', users.alice),
      'crane login',
    );
    const image = images[0] as GeneratedImage;
    ok(await push('bob', image, `${team}/crane-src:v1`), 'push the source');
    ok(
      await crane('alice', 'copy', `${host}/${team}/crane-src:v1`, `${host}/${team}/crane-dst:v2`),
      'crane copy',
    );
    expect(ok(await crane('alice', 'ls', `${host}/${team}/crane-dst`), 'crane ls').trim()).toBe(
      'v2',
    );
    expect(
      ok(await crane('alice', 'digest', `${host}/${team}/crane-dst:v2`), 'crane digest').trim(),
    ).toBe(image.top.digest);
  });

  it('oras logs in, pushes an artifact and pulls it', async () => {
    const login = await runToolAsync(
      tools.oras,
      [
        'login',
        host,
        '-u',
        'alice',
        '--password-stdin',
        ...flags.oras,
        '--registry-config',
        join(authDir('alice'), 'oras.json'),
      ],
      { input: users.alice },
    );
    ok(login, 'oras login');
    const files = join(dir.path, 'oras');
    mkdirSync(join(files, 'out'), { recursive: true });
    const content = randomBytes(4096).toString('hex');
    writeFileSync(join(files, 'notes.txt'), content);
    const pushed = await runToolAsync(
      tools.oras,
      [
        'push',
        `${host}/${team}/notes:v1`,
        'notes.txt:text/plain',
        ...flags.oras,
        '--registry-config',
        join(authDir('alice'), 'oras.json'),
      ],
      { cwd: files },
    );
    ok(pushed, 'oras push');
    ok(
      await oras('alice', 'pull', `${host}/${team}/notes:v1`, '-o', join(files, 'out')),
      'oras pull',
    );
    expect(readFileSync(join(files, 'out', 'notes.txt'), 'utf8')).toBe(content);
  });

  it('containerd pulls with ctr --user through the token endpoint', async () => {
    const image = images[1] as GeneratedImage;
    ok(await push('bob', image, `${team}/ctr:v1`), 'push for containerd');
    containerd = await startContainerd(join(dir.path, 'containerd'));
    const ref = `${host}/${team}/ctr:v1`;
    const anonymous = await containerd.tryCtr('content', 'fetch', ...flags.ctr(host), ref);
    expect(anonymous.status).not.toBe(0);
    await containerd.ctr(
      'images',
      'pull',
      ...flags.ctr(host),
      '--snapshotter',
      'native',
      '--user',
      `reader:${users.reader}`,
      ref,
    );
    expect(await containerd.ctr('images', 'ls')).toContain(image.top.digest);
  });

  it('a pull-only user pulls, and is DENIED on push and on delete', async () => {
    const image = images[0] as GeneratedImage;
    ok(await push('bob', image, `${team}/readonly:v1`), 'push as bob');
    await skopeoLogin('reader');
    ok(await crane('reader', 'auth', 'login', host, '-u', 'reader', '-p', users.reader), 'login');
    expect(
      ok(await crane('reader', 'digest', `${host}/${team}/readonly:v1`), 'crane digest').trim(),
    ).toBe(image.top.digest);
    const pushed = await push('reader', images[1] as GeneratedImage, `${team}/readonly:v2`);
    expect(pushed.status).not.toBe(0);
    expect(pushed.stderr).toMatch(/denied/i);
    const deleted = await crane('reader', 'delete', `${host}/${team}/readonly@${image.top.digest}`);
    expect(deleted.status).not.toBe(0);
    expect(deleted.stderr).toMatch(/DENIED/);
    const removed = await skopeo(
      'reader',
      'delete',
      ...flags.skopeoDelete,
      `docker://${host}/${team}/readonly:v1`,
    );
    expect(removed.status).not.toBe(0);
    expect(removed.stderr).toMatch(/denied/i);
  });

  it('an immutable tag refuses a move by a user without overwrite; the audit trail names both', async () => {
    const [first, second] = images as [GeneratedImage, GeneratedImage];
    const repo = `${team}/immutable`;
    await skopeoLogin('alice');
    ok(await push('alice', first, `${repo}:v1`), 'alice pushes v1');
    const moved = await push('bob', second, `${repo}:v1`);
    expect(moved.status).not.toBe(0);
    expect(moved.stderr).toMatch(/denied/i);
    // Pushing what the tag already names is no move.
    ok(await push('bob', first, `${repo}:v1`), 'bob pushes the same image again');
    ok(await push('alice', second, `${repo}:v1`), 'alice (overwrite) moves v1');
    ok(await push('bob', first, `${repo}:v2`), 'bob pushes a new tag');

    const tagEvents: RecordedEvent[] = [];
    for await (const event of log.read(1)) {
      if (event.type === 'TagPushed' && 'repo' in event.data && event.data.repo === repo) {
        tagEvents.push(event);
      }
    }
    expect(tagEvents.map((e) => [e.metadata.actor, e.metadata.client])).toEqual([
      ['user:alice', '127.0.0.1'],
      ['user:alice', '127.0.0.1'],
      ['user:bob', '127.0.0.1'],
    ]);
  });

  it('shoal tags history and shoal log tail name who pushed and who moved a tag', async () => {
    const [first, second] = images as [GeneratedImage, GeneratedImage];
    const ref = `${team}/shared:v1`;
    await skopeoLogin('alice');
    await skopeoLogin('bob');
    ok(await push('alice', first, ref), 'alice pushes');
    ok(await push('bob', second, ref), 'bob moves the tag');

    const history = await shoalAsync(['tags', 'history', ref, '--data-dir', dataDir]);
    expect(history.stderr).toBe('');
    const rows = history.stdout
      .trim()
      .split('\n')
      .map((line) => line.split(/\s{2,}/));
    expect(rows[0]).toEqual(['POSITION', 'TIME', 'ACTOR', 'CLIENT', 'CHANGE']);
    expect(rows.slice(1).map((row) => [row[2], row[3], row[4]])).toEqual([
      ['user:alice', '127.0.0.1', first.top.digest],
      ['user:bob', '127.0.0.1', second.top.digest],
    ]);

    const tail = await shoalAsync(['log', 'tail', '--from', '1', '--data-dir', dataDir]);
    const tagLines = tail.stdout
      .split('\n')
      .filter((line) => line.includes('TagPushed') && line.includes(`${team}/shared`));
    // Aligned columns (two spaces or more between them): position, time, type, stream, actor,
    // client.
    expect(
      tagLines.map((line) =>
        line
          .trim()
          .split(/\s{2,}/)
          .slice(4, 6),
      ),
    ).toEqual([
      ['user:alice', '127.0.0.1'],
      ['user:bob', '127.0.0.1'],
    ]);
  });
});

import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Agent, fetch as undiciFetch } from 'undici';
import type { Service } from '../fixtures/cli';
import { shoal, startService, tempDir } from '../fixtures/cli';
import { generateImage } from '../fixtures/images';
import { runTool as run, until } from '../fixtures/processes';
import { rawGet, sClient as sClientAt, serialSeen as serialSeenAt } from '../fixtures/tlsClients';

// A cluster as production runs it, on loopback: `shoal certs init` files, build-index, an
// origin that takes only cluster certificates (clientAuth: require) and a proxy, each on
// TLS, the proxy calling the origin with its own certificate. skopeo pushes and pulls over
// TLS checking the cluster CA (no --tls-verify=false); openssl s_client shows what a client
// without a certificate, or with TLS 1.1, gets; a SIGHUP swaps a certificate; the logs hold
// no credential values.
const skopeo = '/usr/bin/skopeo';

/** `skopeo copy` checking TLS against the CA in `certDir` (`--src-`/`--dest-cert-dir`). */
const skopeoCopy = (
  side: 'src' | 'dest',
  certDir: string,
  from: string,
  to: string,
  creds?: string,
) =>
  run(skopeo, [
    '--insecure-policy',
    'copy',
    `--${side}-cert-dir`,
    certDir,
    ...(creds === undefined ? [] : [`--${side}-creds`, creds]),
    from,
    to,
  ]);

const credential = /\b(Basic|Bearer)\s+[A-Za-z0-9+/=._~-]{8,}/;

describe('a cluster with TLS and cluster identities on every listener', () => {
  const dir = tempDir('shoal-security-e2e-');
  const certs = join(dir.path, 'certs');
  const services: Service[] = [];
  let origin: Service;
  let proxy: Service;
  let https: Agent;

  const files = (role: string) => ({
    certFile: join(certs, `${role}.crt`),
    keyFile: join(certs, `${role}.key`),
  });
  const tls = (role: string, clientAuth: 'request' | 'require') =>
    `tls: ${JSON.stringify({ ...files(role), clientCaFile: join(certs, 'ca.crt'), clientAuth })}\n`;

  const start = async (role: string, name: string, config: string) => {
    const file = join(dir.path, `${name}.yml`);
    writeFileSync(file, config);
    // This spec is about security on, whatever the e2e switch says.
    const service = await startService(
      [role, '--config', file],
      new RegExp(`${role}(?: \\S+)? listening on (https://\\S+)`),
      { SHOAL_SECURITY_MODE: 'required', SHOAL_LOG_LEVEL: 'debug' },
    );
    services.push(service);
    return service;
  };

  const caFile = () => join(certs, 'ca.crt');
  const sClient = (url: string, args: string[], request = '') =>
    sClientAt(new URL(url).host, caFile(), args, request);
  const get = rawGet;
  const serialSeen = (url: string) =>
    serialSeenAt(new URL(url).hostname, Number(new URL(url).port), caFile());

  beforeAll(async () => {
    if (!existsSync(skopeo)) {
      throw new Error(`missing ${skopeo}: run \`test/services/tools.sh install\``);
    }
    const init = shoal(['certs', 'init', certs, '--roles', 'build-index,origin/a,proxy,cli']);
    expect(init.status).toBe(0);
    const data = join(dir.path, 'data');
    const common = `dataDir: ${JSON.stringify(data)}\nlisten: { host: 127.0.0.1, port: 0 }\n`;
    const serviceKey = `serviceKeyFile: ${JSON.stringify(join(certs, 'service-token.key'))}`;
    const buildIndex = await start(
      'build-index',
      'build-index',
      `${common}${tls('build-index', 'request')}security: { ${serviceKey} }\n`,
    );
    origin = await start('origin', 'origin', `${common}id: a\n${tls('origin-a', 'require')}`);
    proxy = await start(
      'proxy',
      'proxy',
      `${common}${tls('proxy', 'request')}security: { ${serviceKey} }\n` +
        `buildIndex: { url: ${JSON.stringify(buildIndex.url)} }\n` +
        // Users are not this spec's subject: anyone may push and pull.
        `auth: { anonymous: { repositories: ['**'], actions: [pull, push, overwrite, delete] } }\n`,
    );
    https = new Agent({ connect: { ca: readFileSync(join(certs, 'ca.crt')) } });
  }, 120_000);

  afterAll(async () => {
    for (const service of services.reverse()) await service.stop();
    await https?.close();
    dir.cleanup();
  });

  it('pushes and pulls with skopeo over TLS checking the cluster CA', async () => {
    const image = await generateImage({ dir: join(dir.path, 'image'), layers: 2, layerSize: 64 });
    const host = new URL(proxy.url).host;
    // skopeo trusts the *.crt files of a --cert-dir as CAs.
    const certDir = join(dir.path, 'skopeo-certs');
    run('mkdir', ['-p', certDir]);
    writeFileSync(join(certDir, 'ca.crt'), readFileSync(join(certs, 'ca.crt')));
    skopeoCopy('dest', certDir, image.layoutRef, `docker://${host}/e2e/secure:v1`);
    skopeoCopy(
      'src',
      certDir,
      `docker://${host}/e2e/secure:v1`,
      `oci:${join(dir.path, 'pulled')}:v1`,
    );
    const index = JSON.parse(readFileSync(join(dir.path, 'pulled', 'index.json'), 'utf8'));
    expect(index.manifests[0].digest).toBe(image.top.digest);

    // Credentials sent along (a user's Basic, a bearer token) never reach a log line.
    for (const authorization of ['Basic YWxpY2U6czNjcjN0LXBhc3N3b3Jk', 'Bearer abc.def.ghi-123']) {
      await undiciFetch(`${proxy.url}/v2/e2e/secure/manifests/v1`, {
        headers: { authorization },
        dispatcher: https,
      });
      await undiciFetch(`${origin.url}/internal/blobs/${image.top.digest}`, {
        headers: { authorization },
        dispatcher: https,
      }).catch(() => undefined);
    }
    for (const service of services) {
      expect(service.output()).not.toMatch(credential);
      expect(service.output()).not.toContain('s3cr3t');
    }
  }, 120_000);

  it("keeps the origin's /internal from a client without a cluster certificate", async () => {
    const without = await sClient(origin.url, [], get('/internal/ring'));
    expect(without).not.toMatch(/HTTP\/1\.1 200/);
    expect(without).toMatch(/alert|certificate required|handshake failure|errno/i);
    const cli = files('cli');
    const withCert = await sClient(
      origin.url,
      ['-cert', cli.certFile, '-key', cli.keyFile],
      get('/internal/ring'),
    );
    expect(withCert).toMatch(/HTTP\/1\.1 200/);
  }, 60_000);

  it('refuses TLS 1.1', async () => {
    // SECLEVEL=0 lets openssl offer TLS 1.1 at all: the refusal seen is the server's.
    const output = await sClient(
      proxy.url,
      ['-tls1_1', '-cipher', 'DEFAULT:@SECLEVEL=0'],
      get('/v2/'),
    );
    expect(output).toMatch(/alert protocol version/);
    expect(output).not.toContain('HTTP/1.1');
    // TLS 1.2 is served (the ping asks for a login: the proxy has users).
    const tls12 = await sClient(proxy.url, ['-tls1_2'], get('/v2/'));
    expect(tls12).toMatch(/HTTP\/1\.1 401/);
  }, 60_000);

  it('swaps the certificate on SIGHUP: a new connection sees the new serial', async () => {
    const before = await serialSeen(proxy.url);
    const renew = shoal(['certs', 'init', certs, '--roles', 'proxy', '--renew']);
    expect(renew.status).toBe(0);
    proxy.child.kill('SIGHUP');
    await until(
      async () => (await serialSeen(proxy.url)) !== before,
      10_000,
      'a new serial after SIGHUP',
      100,
    );
    expect(await serialSeen(proxy.url)).not.toBe(before);
    // Still serving, over the new certificate.
    const ping = await undiciFetch(`${proxy.url}/v2/`, { dispatcher: https });
    expect(ping.status).toBe(401);
    expect(ping.headers.get('www-authenticate')).toMatch(/^Bearer realm="https:/);
  }, 60_000);
});

describe('shoal dev --secure', () => {
  const dir = tempDir('shoal-dev-secure-');
  let dev: Service | undefined;
  afterAll(async () => {
    await dev?.stop();
    dir.cleanup();
  });

  it('runs the cluster on TLS with identities: skopeo checks the CA, the swarm serves', async () => {
    dev = await startService(
      ['dev', '--secure', '--port-base', '0', '--data-dir', join(dir.path, 'data')],
      /endpoints {4}(\S+)/,
    );
    const banner = dev.output();
    expect(banner).not.toContain('ACCESS IS OPEN');
    const certDir = /--dest-cert-dir (\S+)/.exec(banner)?.[1] as string;
    const registry = /docker:\/\/(localhost:\d+)\/demo/.exec(banner)?.[1] as string;
    const agent = (/ {2}agent {8}https:\/\/127\.0\.0\.1:(\d+)/.exec(banner)?.[1] ?? '') as string;
    const image = await generateImage({ dir: join(dir.path, 'image'), layers: 2, layerSize: 4096 });
    // The admin it printed: without a login a push is refused.
    const login = /login {8}(\S+) \/ (\S+)/.exec(banner);
    expect(login).not.toBeNull();
    const creds = `${login?.[1]}:${login?.[2]}`;
    expect(() =>
      skopeoCopy('dest', certDir, image.layoutRef, `docker://${registry}/demo/app:v0`),
    ).toThrow(/unauthorized|authentication required|denied/i);
    skopeoCopy('dest', certDir, image.layoutRef, `docker://${registry}/demo/app:v1`, creds);
    // Through the agent: tracker, origin (seeder) and agent calling each other with identities.
    skopeoCopy(
      'src',
      certDir,
      `docker://localhost:${agent}/demo/app:v1`,
      `oci:${join(dir.path, 'pulled')}:v1`,
    );
    const index = JSON.parse(readFileSync(join(dir.path, 'pulled', 'index.json'), 'utf8'));
    expect(index.manifests[0].digest).toBe(image.top.digest);
    // The CLI line it prints reaches build-index with the cli certificate.
    const history = /npx shoal (tags history .*)$/m.exec(banner)?.[1] as string;
    const result = shoal([...history.split(' '), '--json'], { SHOAL_SERVICE_KEY_FILE: '' });
    expect(result.stderr).toBe('');
    expect(JSON.parse(result.stdout)).toMatchObject({
      history: [{ kind: 'pushed', digest: image.top.digest }],
    });
  }, 180_000);
});

import { readFileSync } from 'node:fs';
import { validateConfig } from '../config';
import { createHttpApp } from '../http';
import { silentLogger } from '../logger';
import { roleConfig } from '../roleConfig';
import { createHttpTransport, readBody } from '../../../kit/http/transport';
import type { ClientTlsMaterial } from '../../../kit/http/transport';
import { Type } from '@sinclair/typebox';
import { tempDir } from '../../../test/fixtures/cli';
import { eventually } from '../../../test/fixtures/processes';
import {
  rawGet,
  sClient as sClientAt,
  serialSeen as serialSeenAt,
} from '../../../test/fixtures/tlsClients';
import { auditOf, requireService } from './authenticate';
import type { ClusterCertificates } from './clusterCa';
import { initClusterCertificates } from './clusterCa';
import type { RoleSecurity } from './roleSecurity';
import { createRoleSecurity } from './roleSecurity';

// TLS on a role's listener, on loopback with real clients (openssl s_client, Node's TLS, the
// kit transport): TLS 1.2 at least, client certificates from the cluster CA as identities,
// certificates swapped on reload and on file change without dropping open connections.

const Schema = Type.Object({
  tls: roleConfig.tls(),
  security: roleConfig.security(),
  http: roleConfig.http(),
  admin: roleConfig.admin(),
});

const dir = tempDir('shoal-tls-');
let certs: ClusterCertificates;
beforeAll(() => {
  certs = initClusterCertificates({
    dir: dir.path,
    roles: ['origin/1', 'agent/h1', 'proxy', 'cli'],
  });
});
afterAll(() => dir.cleanup());

const filesOf = (role: string) => certs.roles[role] as { certFile: string; keyFile: string };
const materialOf = (role?: string): ClientTlsMaterial => ({
  ca: readFileSync(certs.caFile),
  ...(role !== undefined && {
    cert: readFileSync(filesOf(role).certFile),
    key: readFileSync(filesOf(role).keyFile),
  }),
});

/** An origin-like app: `/internal/whoami` for cluster identities only. */
const startApp = async (clientAuth: 'request' | 'require', overrides: object = {}) => {
  const config = validateConfig(Schema, {
    tls: { ...filesOf('origin/1'), clientCaFile: certs.caFile, clientAuth },
    security: { mode: 'required', serviceKeyFile: certs.serviceKeyFile },
    ...overrides,
  });
  const security: RoleSecurity = createRoleSecurity(
    config,
    { role: 'origin', name: '1' },
    silentLogger(),
  );
  const { app, listen } = createHttpApp({
    service: 'origin',
    logger: silentLogger(),
    authenticators: security.authenticators,
    server: security.server,
  });
  app.get('/internal/whoami', async (request) => {
    requireService(request, security.mode);
    return auditOf(request);
  });
  const { url } = await listen({ host: '127.0.0.1', port: 0 });
  return {
    url,
    port: Number(new URL(url).port),
    security,
    close: async () => {
      await app.close();
      security.close();
    },
  };
};

const sClient = (port: number, args: string[], request = ''): Promise<string> =>
  sClientAt(`127.0.0.1:${port}`, certs.caFile, args, request);
const get = rawGet;
const serialSeen = (port: number): Promise<string> => serialSeenAt('127.0.0.1', port, certs.caFile);

const call = async (url: string, material: ClientTlsMaterial, headers = {}) => {
  const transport = createHttpTransport({ idleTimeoutMs: 10_000, tls: () => material });
  try {
    const response = await transport.request({
      method: 'GET',
      url: new URL('/internal/whoami', url),
      headers,
    });
    const { bytes } = await readBody(response.body, 64 * 1024);
    return { status: response.status, body: JSON.parse(bytes.toString()) as unknown };
  } finally {
    await transport.close();
  }
};

describe('TLS on a listener', () => {
  it('refuses TLS 1.1 and accepts TLS 1.2 and 1.3', async () => {
    const app = await startApp('request');
    try {
      // SECLEVEL=0 lets openssl offer TLS 1.1 at all: the refusal seen is the server's.
      const old = await sClient(app.port, ['-tls1_1', '-cipher', 'DEFAULT:@SECLEVEL=0'], get('/'));
      expect(old).toMatch(/alert protocol version/);
      expect(old).not.toContain('HTTP/1.1');
      const tls12 = await sClient(
        app.port,
        ['-tls1_2', '-cipher', 'DEFAULT:@SECLEVEL=0'],
        get('/'),
      );
      expect(tls12).toContain('Protocol  : TLSv1.2');
      expect(tls12).toContain('HTTP/1.1 404');
      expect(await sClient(app.port, ['-tls1_3'], get('/'))).toContain('HTTP/1.1 404');
    } finally {
      await app.close();
    }
  });

  it('keeps /internal from a client without a certificate (s_client), and lets one in', async () => {
    const required = await startApp('require');
    const requested = await startApp('request');
    try {
      const refused = await sClient(required.port, [], get('/internal/whoami'));
      expect(refused).not.toContain('HTTP/1.1 200');
      expect(refused).toMatch(/alert certificate required|alert handshake failure/i);
      const unauthenticated = await sClient(requested.port, [], get('/internal/whoami'));
      expect(unauthenticated).toContain('HTTP/1.1 401');
      const cli = filesOf('cli');
      const admitted = await sClient(
        required.port,
        ['-cert', cli.certFile, '-key', cli.keyFile],
        get('/internal/whoami'),
      );
      expect(admitted).toContain('HTTP/1.1 200');
      expect(admitted).toContain('"actor":"service:cli/1"');
    } finally {
      await required.close();
      await requested.close();
    }
  });

  it('names the service a client certificate or a service token stands for', async () => {
    const app = await startApp('request');
    try {
      expect(await call(app.url, materialOf('agent/h1'))).toEqual({
        status: 200,
        body: { actor: 'service:agent/h1', client: '127.0.0.1' },
      });
      const token = await (app.security.tokens as NonNullable<RoleSecurity['tokens']>).token();
      expect(await call(app.url, materialOf(), { authorization: `Bearer ${token}` })).toEqual({
        status: 200,
        body: { actor: 'service:origin/1', client: '127.0.0.1' },
      });
      const forged = `${token.slice(0, -4)}AAAA`;
      expect(
        (await call(app.url, materialOf(), { authorization: `Bearer ${forged}` })).status,
      ).toBe(401);
      // A certificate another CA issued is refused, not taken as anonymous.
      const stranger = tempDir('shoal-tls-other-');
      try {
        const other = initClusterCertificates({ dir: stranger.path, roles: ['origin'] });
        const files = other.roles.origin as { certFile: string; keyFile: string };
        const result = await call(app.url, {
          ca: readFileSync(certs.caFile),
          cert: readFileSync(files.certFile),
          key: readFileSync(files.keyFile),
        });
        expect(result.status).toBe(401);
      } finally {
        stranger.cleanup();
      }
    } finally {
      await app.close();
    }
  });

  it('swaps the certificate on reload (SIGHUP) and on file change, keeping open connections', async () => {
    const app = await startApp('request');
    try {
      const first = await serialSeen(app.port);
      // A keep-alive connection opened before the swap.
      const transport = createHttpTransport({
        idleTimeoutMs: 10_000,
        tls: () => materialOf('cli'),
      });
      const before = await transport.request({
        method: 'GET',
        url: new URL('/internal/whoami', app.url),
      });
      await readBody(before.body, 1024);

      initClusterCertificates({ dir: dir.path, roles: ['origin/1'], renew: true });
      app.security.reload();
      const second = await serialSeen(app.port);
      expect(second).not.toBe(first);
      const during = await transport.request({
        method: 'GET',
        url: new URL('/internal/whoami', app.url),
      });
      expect(during.status).toBe(200);
      await readBody(during.body, 1024);
      await transport.close();

      // Without a signal: the files are polled.
      initClusterCertificates({ dir: dir.path, roles: ['origin/1'], renew: true });
      const third = await eventually(
        'the renewed certificate',
        async () => {
          const serial = await serialSeen(app.port);
          return serial !== second ? serial : undefined;
        },
        15_000,
        200,
      );
      expect(third).not.toBe(first);
    } finally {
      await app.close();
    }
  });
});

import { execFileSync } from 'node:child_process';
import { createPrivateKey, generateKeyPairSync } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { SignJWT, exportJWK } from 'jose';
import { tempDir } from '../../../test/fixtures/cli';
import { createTokenSigner, createTokenVerifier } from './tokens';

// Tokens Shoal signs, and tokens of issuers it is told to trust: by JWKS URL (an OIDC
// provider, served here by a plain HTTP server) or by certificate bundle (docker_auth, Harbor).

const codeOf = async (promise: Promise<unknown>) =>
  promise.then(
    () => undefined,
    (error: { code?: string }) => error.code,
  );

describe('tokens', () => {
  let dir: ReturnType<typeof tempDir>;
  beforeAll(() => {
    dir = tempDir('shoal-tokens-');
  });
  afterAll(() => dir.cleanup());

  const access = [{ type: 'repository', name: 'team/app', actions: ['pull', 'push'] }];

  it('verifies its own tokens: subject, kind and access; refuses another audience or a refresh token', async () => {
    const keyFile = join(dir.path, 'signing.pem');
    writeFileSync(
      keyFile,
      generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey.export({
        type: 'sec1',
        format: 'pem',
      }),
    );
    const signer = createTokenSigner({ keyFile, issuer: 'shoal', audience: 'registry' });
    expect(signer.algorithm).toBe('ES256');
    const own = { issuer: 'shoal', audience: 'registry', publicKey: signer.publicKey };
    const verifier = createTokenVerifier({ own, issuers: [] });
    const token = await signer.sign({ subject: 'ci', kind: 'robot', access }, 60);
    await expect(verifier.verify(token)).resolves.toMatchObject({
      subject: 'ci',
      kind: 'robot',
      access,
      checkPolicies: true,
    });
    const elsewhere = createTokenVerifier({ own: { ...own, audience: 'other' }, issuers: [] });
    expect(await codeOf(elsewhere.verify(token))).toBe('UNAUTHORIZED');
    const refresh = await signer.sign({ subject: 'ci', kind: 'robot', access: [] }, 60, {
      refresh: true,
    });
    expect(await codeOf(verifier.verify(refresh))).toBe('UNAUTHORIZED');
    await expect(signer.verifyRefresh(refresh)).resolves.toEqual({ subject: 'ci', kind: 'robot' });
    expect(await codeOf(signer.verifyRefresh(token))).toBe('UNAUTHORIZED');
  });

  it('refuses an expired token and one signed by another key', async () => {
    let now = Date.now();
    const signer = createTokenSigner({
      keyFile: '',
      issuer: 'shoal',
      audience: 'r',
      now: () => now,
    });
    const other = createTokenSigner({ keyFile: '', issuer: 'shoal', audience: 'r' });
    const verifier = createTokenVerifier({
      own: { issuer: 'shoal', audience: 'r', publicKey: signer.publicKey },
      issuers: [],
    });
    now -= 120_000;
    const old = await signer.sign({ subject: 'a', kind: 'user', access }, 60);
    expect(await codeOf(verifier.verify(old))).toBe('UNAUTHORIZED');
    const forged = await other.sign({ subject: 'a', kind: 'user', access }, 60);
    expect(await codeOf(verifier.verify(forged))).toBe('UNAUTHORIZED');
    expect(await codeOf(verifier.verify('not-a-jwt'))).toBe('UNAUTHORIZED');
  });

  it('accepts an OIDC issuer by JWKS URL, checking iss and aud, with groups for the policies', async () => {
    const { privateKey, publicKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
    const jwk = { ...(await exportJWK(publicKey)), kid: 'k1', alg: 'RS256' };
    const server = createServer((_request, response) => {
      response.setHeader('content-type', 'application/json');
      response.end(JSON.stringify({ keys: [jwk] }));
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const jwksUrl = `http://127.0.0.1:${(server.address() as AddressInfo).port}/jwks`;
    try {
      const verifier = createTokenVerifier({
        issuers: [
          {
            issuer: 'https://idp.example',
            audience: 'shoal',
            jwksUrl,
            certificateFile: '',
            access: 'policies',
            groupsClaim: 'groups',
          },
        ],
      });
      const sign = (claims: { iss: string; aud: string }) =>
        new SignJWT({ groups: ['dev', 7] })
          .setProtectedHeader({ alg: 'RS256', kid: 'k1' })
          .setIssuer(claims.iss)
          .setAudience(claims.aud)
          .setSubject('alice@example.com')
          .setExpirationTime('5m')
          .sign(privateKey);
      await expect(
        verifier.verify(await sign({ iss: 'https://idp.example', aud: 'shoal' })),
      ).resolves.toMatchObject({
        subject: 'alice@example.com',
        groups: ['dev'],
        checkPolicies: true,
      });
      expect(
        await codeOf(verifier.verify(await sign({ iss: 'https://idp.example', aud: 'else' }))),
      ).toBe('UNAUTHORIZED');
      expect(
        await codeOf(verifier.verify(await sign({ iss: 'https://evil.example', aud: 'shoal' }))),
      ).toBe('UNAUTHORIZED');
    } finally {
      server.close();
    }
  });

  it('accepts a Docker token server by certificate bundle, its access claim deciding', async () => {
    const keyFile = join(dir.path, 'issuer.key');
    const certFile = join(dir.path, 'bundle.pem');
    const otherCert = join(dir.path, 'other.pem');
    // Two certificates in the bundle (a rotation): a token signed by either key is accepted.
    for (const [key, cert] of [
      [join(dir.path, 'old.key'), otherCert],
      [keyFile, certFile],
    ] as const) {
      execFileSync('openssl', [
        'req',
        '-x509',
        '-newkey',
        'ec',
        '-pkeyopt',
        'ec_paramgen_curve:P-256',
        '-nodes',
        '-keyout',
        key,
        '-out',
        cert,
        '-days',
        '1',
        '-subj',
        '/CN=token-issuer',
      ]);
    }
    execFileSync('sh', ['-c', `cat "${otherCert}" >> "${certFile}"`]);
    const verifier = createTokenVerifier({
      issuers: [
        {
          issuer: 'docker_auth',
          audience: 'shoal-registry',
          jwksUrl: '',
          certificateFile: certFile,
          access: 'claims',
          groupsClaim: 'groups',
        },
      ],
    });
    const token = await new SignJWT({ access })
      .setProtectedHeader({ alg: 'ES256' })
      .setIssuer('docker_auth')
      .setAudience('shoal-registry')
      .setSubject('bob')
      .setExpirationTime('5m')
      .sign(createPrivateKey(execFileSync('cat', [keyFile])));
    await expect(verifier.verify(token)).resolves.toMatchObject({
      subject: 'bob',
      access,
      checkPolicies: false,
    });
  });
});

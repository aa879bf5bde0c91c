import { randomBytes } from 'node:crypto';
import type { Server } from 'node:http';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { Readable } from 'node:stream';
import type { FakeRegistry } from '../../test/doubles/fakeRegistry';
import { startFakeRegistry } from '../../test/doubles/fakeRegistry';
import { parseChallenge } from './registryAuth';
import { createRegistryClient } from './registryClient';
import { sha256 } from '../../test/fixtures/blobs';

const opener = (bytes: Buffer) => async (start: number, end: number) =>
  Readable.from([bytes.subarray(start, end + 1)]);

describe('the destination registry client', () => {
  let fakes: FakeRegistry[] = [];
  afterEach(async () => {
    await Promise.all(fakes.map((f) => f.close()));
    fakes = [];
  });
  const start = async (options: Parameters<typeof startFakeRegistry>[0] = {}) => {
    const fake = await startFakeRegistry(options);
    fakes.push(fake);
    return fake;
  };

  it('parses WWW-Authenticate challenges', () => {
    expect(
      parseChallenge('Bearer realm="https://auth.example/token",service="reg",scope="a:b:c,d"'),
    ).toEqual({
      scheme: 'bearer',
      params: { realm: 'https://auth.example/token', service: 'reg', scope: 'a:b:c,d' },
    });
    expect(parseChallenge('Basic realm="x"')).toEqual({ scheme: 'basic', params: { realm: 'x' } });
    expect(parseChallenge('Negotiate')).toBeUndefined();
  });

  it('uploads a blob in one request and in chunks, checking what it sent', async () => {
    const fake = await start();
    const client = createRegistryClient({ baseUrl: fake.url });
    const small = randomBytes(1000);
    const large = randomBytes(300 * 1024);
    for (const bytes of [small, large]) {
      await client.uploadBlob('r/a', { digest: sha256(bytes), size: bytes.length }, opener(bytes), {
        chunkSize: 64 * 1024,
      });
      expect(await client.blobSize('r/a', sha256(bytes))).toBe(bytes.length);
    }
    expect(fake.requests.filter((r) => r.startsWith('PATCH')).length).toBe(5);
    client.close();
  });

  it('never commits a chunked upload whose bytes do not match the digest', async () => {
    const fake = await start();
    const client = createRegistryClient({ baseUrl: fake.url });
    const bytes = randomBytes(200 * 1024);
    const claimed = sha256(randomBytes(8));
    await expect(
      client.uploadBlob('r/a', { digest: claimed, size: bytes.length }, opener(bytes), {
        chunkSize: 64 * 1024,
      }),
    ).rejects.toMatchObject({ code: 'DIGEST_INVALID' });
    expect(fake.blobs.size).toBe(0);
    expect(fake.requests.some((r) => r.startsWith('PUT /upload'))).toBe(false);
    expect(fake.requests.some((r) => r.startsWith('DELETE /upload'))).toBe(true);
    client.close();
  });

  it('answers a bearer challenge with a token for the repository scope; renews it', async () => {
    const fake = await start({ auth: 'bearer' });
    const client = createRegistryClient({
      baseUrl: fake.url,
      credential: { username: 'user', password: 'secret' },
    });
    const bytes = randomBytes(100 * 1024);
    await client.uploadBlob(
      'team/app',
      { digest: sha256(bytes), size: bytes.length },
      opener(bytes),
      {
        chunkSize: 32 * 1024,
      },
    );
    expect(fake.tokenScopes).toContain('repository:team/app:pull,push');
    fake.expireTokens();
    // A streamed body is sent again after the challenge.
    const again = randomBytes(500);
    await client.uploadBlob(
      'team/app',
      { digest: sha256(again), size: again.length },
      opener(again),
      {
        chunkSize: 32 * 1024,
      },
    );
    expect(fake.blobs.get(sha256(again))).toEqual(again);
    client.close();
  });

  it('fails with DENIED when the token endpoint refuses the credentials', async () => {
    const fake = await start({ auth: 'bearer' });
    const client = createRegistryClient({
      baseUrl: fake.url,
      credential: { username: 'user', password: 'wrong' },
    });
    await expect(client.blobSize('team/app', sha256(Buffer.from('x')))).rejects.toMatchObject({
      code: 'DENIED',
    });
    client.close();
  });

  it('uses basic authentication when the registry asks for it', async () => {
    const fake = await start({ auth: 'basic' });
    const anonymous = createRegistryClient({ baseUrl: fake.url });
    await expect(anonymous.ping()).rejects.toMatchObject({ code: 'DENIED' });
    const client = createRegistryClient({
      baseUrl: fake.url,
      credential: { username: 'user', password: 'secret' },
    });
    await client.ping();
    const manifest = Buffer.from('{"schemaVersion":2}');
    expect(await client.putManifest('r/a', 'v1', manifest, 'application/json')).toBe(
      sha256(manifest),
    );
    expect(await client.manifestInfo('r/a', 'v1')).toMatchObject({ digest: sha256(manifest) });
    anonymous.close();
    client.close();
  });

  it('tells whether a registry indexes referrers (OCI-Subject, the referrers API)', async () => {
    const subject = sha256(Buffer.from('{"schemaVersion":2,"s":1}'));
    const referrer = Buffer.from(
      JSON.stringify({ schemaVersion: 2, subject: { digest: subject, size: 1 } }),
    );
    const mediaType = 'application/vnd.oci.image.manifest.v1+json';
    for (const referrersApi of [true, false]) {
      const fake = await start({ referrersApi });
      const client = createRegistryClient({ baseUrl: fake.url });
      expect(await client.putReferrer('r/a', sha256(referrer), referrer, mediaType)).toEqual({
        indexed: referrersApi,
      });
      expect(await client.hasReferrersApi('r/a', subject)).toBe(referrersApi);
      expect(fake.manifests.has(`r/a@${sha256(referrer)}`)).toBe(true);
      client.close();
    }
  });

  it('mounts from another repository; 5xx is a retriable SERVICE_UNAVAILABLE', async () => {
    const fake = await start();
    const client = createRegistryClient({ baseUrl: fake.url });
    const bytes = randomBytes(64);
    await client.uploadBlob('r/a', { digest: sha256(bytes), size: 64 }, opener(bytes), {
      chunkSize: 1024,
    });
    expect(await client.mountBlob('r/b', sha256(bytes), 'r/a')).toBe(true);
    expect(await client.mountBlob('r/c', sha256(randomBytes(4)), 'r/a')).toBe(false);
    fake.down = true;
    await expect(client.ping()).rejects.toMatchObject({
      code: 'SERVICE_UNAVAILABLE',
      retriable: true,
    });
    client.close();
  });

  describe('credentials go to the destination host only', () => {
    /** A second host: records every Authorization it is sent, and challenges for Basic. */
    const startSpy = async () => {
      const seen: string[] = [];
      const requests: string[] = [];
      const server = createServer((request, response) => {
        requests.push(`${request.method} ${request.url}`);
        if (request.headers.authorization !== undefined) seen.push(request.headers.authorization);
        request.resume();
        if (request.url?.startsWith('/token')) {
          response.writeHead(200, { 'content-type': 'application/json' });
          return response.end(JSON.stringify({ token: 'anonymous-token', expires_in: 300 }));
        }
        response.writeHead(401, { 'www-authenticate': 'Basic realm="spy"' });
        response.end();
      });
      await new Promise<void>((done) => server.listen(0, '127.0.0.1', done));
      const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
      spies.push(server);
      return { url, host: new URL(url).host, seen, requests };
    };
    const spies: Server[] = [];
    afterEach(async () => {
      for (const spy of spies.splice(0)) {
        spy.closeAllConnections();
        await new Promise((done) => spy.close(done));
      }
    });
    const credential = { username: 'user', password: 'secret' };

    it('never sends them to a host an upload Location names', async () => {
      const spy = await startSpy();
      const fake = await start({ auth: 'basic', uploadsAt: spy.url });
      const client = createRegistryClient({ baseUrl: fake.url, credential });
      const bytes = randomBytes(100);
      await expect(
        client.uploadBlob('r/a', { digest: sha256(bytes), size: 100 }, opener(bytes), {
          chunkSize: 1024,
        }),
      ).rejects.toMatchObject({ code: 'DENIED' });
      expect(spy.requests.length).toBeGreaterThan(0);
      expect(spy.seen).toEqual([]);
      client.close();
    });

    it('never sends them to a host a Link names', async () => {
      const spy = await startSpy();
      const fake = await start({ auth: 'basic', nextPageAt: spy.url });
      const client = createRegistryClient({ baseUrl: fake.url, credential });
      await expect(client.listTags('r/a')).rejects.toMatchObject({ code: 'DENIED' });
      expect(spy.requests).toEqual(['GET /v2/r/a/tags/list?n=1000&last=z']);
      expect(spy.seen).toEqual([]);
      client.close();
    });

    it('asks a token realm on another host anonymously, unless it is listed for them', async () => {
      const spy = await startSpy();
      const fake = await start({ auth: 'bearer', realm: `${spy.url}/token` });
      const client = createRegistryClient({ baseUrl: fake.url, credential });
      await expect(client.ping()).rejects.toMatchObject({ code: 'DENIED' });
      expect(spy.requests).toEqual([expect.stringMatching(/^GET \/token\?service=fake/)]);
      expect(spy.seen).toEqual([]);
      client.close();

      const trusting = createRegistryClient({
        baseUrl: fake.url,
        credential: { ...credential, realmHosts: [spy.host] },
      });
      await expect(trusting.ping()).rejects.toMatchObject({ code: 'DENIED' });
      expect(spy.seen).toEqual([`Basic ${Buffer.from('user:secret').toString('base64')}`]);
      trusting.close();
    });
  });
});

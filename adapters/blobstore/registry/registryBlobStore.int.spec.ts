import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import type { IncomingMessage, Server, ServerResponse } from 'node:http';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { Value } from '@sinclair/typebox/value';
import type { Digest } from '../../../domain';
import { blobObjectName, mediaTypes } from '../../../domain';
import { describeBlobStoreContract } from '../../../test/contracts/blobStoreContract';
import { generateImage } from '../../../test/fixtures/images';
import type { TokenIssuer, UpstreamRegistry } from '../../../test/fixtures/upstreamRegistry';
import {
  pushBlob,
  startTokenIssuer,
  upstreamCredentials,
  useUpstreamRegistry,
} from '../../../test/fixtures/upstreamRegistry';
import type { RegistryBackendConfig, RegistryBlobStore } from './config';
import { RegistryBackendConfigSchema } from './config';
import { createRegistryBlobStore } from './registryBlobStore';
import { sha256 } from '../../../test/fixtures/blobs';
import { drain } from '../../../test/fixtures/streams';
import { codeOf } from '../../../test/fixtures/errors';

// The real CNCF registry as the upstream: UPSTREAM_REGISTRY when set, else this spec starts
// it with test/services/upstream-registry.sh (and stops it again when it did).
let upstream: UpstreamRegistry;
beforeAll(() => {
  upstream = useUpstreamRegistry('basic');
}, 300_000);
afterAll(() => upstream.stop());

const freshRepo = (what: string) => `${what}/r${randomBytes(5).toString('hex')}`;

/** A store's config: the schema's defaults, the test upstream, and `overrides`. */
const config = (overrides: Partial<RegistryBackendConfig> = {}): RegistryBackendConfig =>
  Value.Default(RegistryBackendConfigSchema, {
    url: upstream.url,
    ...upstreamCredentials,
    stripPrefix: 'hub/',
    ...overrides,
  }) as RegistryBackendConfig;

const errorOf = async (promise: Promise<unknown>): Promise<Error> => {
  try {
    await promise;
  } catch (error) {
    return error as Error;
  }
  throw new Error('expected a rejection');
};

const stores: RegistryBlobStore[] = [];
const open = (overrides: Partial<RegistryBackendConfig> = {}) => {
  const store = createRegistryBlobStore(config(overrides));
  stores.push(store);
  return store;
};
afterEach(() => {
  for (const store of stores.splice(0)) store.close();
});

// The read-only contract, every object seeded by a push to the upstream's own HTTP API.
let contractRepo = '';
describeBlobStoreContract(
  'registry',
  async () => {
    contractRepo = freshRepo('contract');
    const root = createRegistryBlobStore(config());
    return { store: root.forRepository(`hub/${contractRepo}`), cleanup: async () => root.close() };
  },
  {
    capabilities: {
      list: false,
      readOnly: {
        seed: async (_name, bytes) =>
          blobObjectName(await pushBlob(upstream.url, contractRepo, bytes)),
      },
    },
  },
);

describe('registry BlobStore specifics', () => {
  it('reads an image pushed by skopeo: layers, config, and the manifest by digest', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'shoal-upstream-image-'));
    try {
      const image = await generateImage({ dir, layers: 2, layerSize: 300_000 });
      const repo = freshRepo('skopeo');
      execFileSync(
        'skopeo',
        [
          '--insecure-policy',
          'copy',
          '--preserve-digests',
          '--dest-tls-verify=false',
          `--dest-creds=${upstreamCredentials.username}:${upstreamCredentials.password}`,
          image.layoutRef,
          `docker://${upstream.host}/${repo}:${image.tag}`,
        ],
        { stdio: ['ignore', 'ignore', 'pipe'], timeout: 120_000 },
      );
      const store = open().forRepository(`hub/${repo}`);
      expect(store.upstreamRepository).toBe(repo);
      const [platform] = image.manifests;
      if (platform === undefined) throw new Error('no manifest');
      const fileOf = (digest: string) =>
        readFileSync(join(dir, 'blobs', 'sha256', digest.slice('sha256:'.length)));

      for (const blob of [...platform.layers, platform.config, platform.manifest]) {
        const name = blobObjectName(blob.digest as Digest);
        await expect(store.stat(name)).resolves.toEqual({ size: blob.size });
        const read = await store.get(name);
        expect(read).toMatchObject({ size: blob.size, start: 0, end: blob.size - 1 });
        expect((await drain(read.stream)).equals(fileOf(blob.digest))).toBe(true);
      }
      // An origin with an object prefix names the same blob with it.
      const layer = platform.layers[0];
      if (layer === undefined) throw new Error('no layer');
      const prefixed = blobObjectName(layer.digest as Digest, 'cluster-a/');
      await expect(store.stat(prefixed)).resolves.toEqual({ size: layer.size });
      // A range of a layer (206 from the registry) and of a manifest (sent whole, sliced).
      const part = await store.get(prefixed, { start: 1000, end: 1999 });
      expect((await drain(part.stream)).equals(fileOf(layer.digest).subarray(1000, 2000))).toBe(
        true,
      );
      const manifestName = blobObjectName(platform.manifest.digest as Digest);
      const slice = await store.get(manifestName, { start: 10, end: 40 });
      expect(slice).toMatchObject({ size: platform.manifest.size, start: 10, end: 40 });
      expect(
        (await drain(slice.stream)).equals(fileOf(platform.manifest.digest).subarray(10, 41)),
      ).toBe(true);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('fetches manifests by tag and by digest, verified', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'shoal-upstream-image-'));
    try {
      const image = await generateImage({ dir, layers: 1, layerSize: 10_000, tag: 'v2' });
      const repo = freshRepo('tags');
      execFileSync(
        'skopeo',
        [
          '--insecure-policy',
          'copy',
          '--preserve-digests',
          '--dest-tls-verify=false',
          `--dest-creds=${upstreamCredentials.username}:${upstreamCredentials.password}`,
          image.layoutRef,
          `docker://${upstream.host}/${repo}:v2`,
        ],
        { stdio: ['ignore', 'ignore', 'pipe'], timeout: 120_000 },
      );
      const bytes = readFileSync(
        join(dir, 'blobs', 'sha256', image.top.digest.slice('sha256:'.length)),
      );
      const root = open();
      const expected = { bytes, digest: image.top.digest, mediaType: mediaTypes.ociManifest };
      await expect(root.fetchManifest(`hub/${repo}`, 'v2')).resolves.toEqual(expected);
      await expect(
        root.forRepository(`hub/${repo}`).fetchManifest(image.top.digest),
      ).resolves.toEqual(expected);
      expect(await codeOf(root.fetchManifest(`hub/${repo}`, 'nope'))).toBe('MANIFEST_UNKNOWN');
      expect(await codeOf(root.fetchManifest(`hub/${repo}`, sha256(randomBytes(8))))).toBe(
        'MANIFEST_UNKNOWN',
      );
      expect(await codeOf(root.fetchManifest(`hub/${repo}`, 'bad tag!'))).toBe('TAG_INVALID');
      // A tag's digest from a HEAD: what a pull-through tag's recheck asks.
      const scoped = root.forRepository(`hub/${repo}`);
      await expect(scoped.headManifest('v2')).resolves.toBe(image.top.digest);
      expect(await codeOf(scoped.headManifest('nope'))).toBe('MANIFEST_UNKNOWN');
      expect(await codeOf(scoped.headManifest('bad tag!'))).toBe('TAG_INVALID');
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('is read-only and needs a repository; repositories outside stripPrefix are refused', async () => {
    const root = open();
    const name = blobObjectName(sha256(Buffer.from('x')));
    expect(root.readOnly).toBe(true);
    const refused = await errorOf(root.get(name));
    expect(refused).toMatchObject({ code: 'PARAMETER_INVALID' });
    expect(refused.message).toContain('needs a repository');
    expect(await codeOf(root.stat(name))).toBe('PARAMETER_INVALID');
    expect(await codeOf(root.put(name, Readable.from([Buffer.from('x')])))).toBe('UNSUPPORTED');
    expect(await codeOf(root.delete(name))).toBe('UNSUPPORTED');
    expect(await codeOf(root.list()[Symbol.asyncIterator]().next())).toBe('UNSUPPORTED');
    expect(await codeOf(root.forRepository('elsewhere/app').get(name))).toBe('PARAMETER_INVALID');
    expect(await codeOf(root.forRepository('hub/Bad_Name').stat(name))).toBe('NAME_INVALID');
    // Without stripPrefix the Shoal name is the upstream name.
    expect(open({ stripPrefix: '' }).forRepository('library/alpine').upstreamRepository).toBe(
      'library/alpine',
    );
  });

  it('checks credentials and reachability', async () => {
    await expect(open().check()).resolves.toBeUndefined();
    const wrong = open({ password: 'wrong' });
    const refused = await errorOf(wrong.check());
    expect(refused).toMatchObject({ code: 'CONFIG_INVALID' });
    expect(refused.message).toContain('"shoal"');
    // A read with the wrong password names the repository.
    const read = await errorOf(
      wrong.forRepository('hub/some/app').get(blobObjectName(sha256(Buffer.from('y')))),
    );
    expect(read).toMatchObject({ code: 'CONFIG_INVALID' });
    expect(read.message).toContain('some/app');
    expect(await codeOf(open({ username: '', password: '' }).check())).toBe('CONFIG_INVALID');

    const closed = await closedPort();
    const down = open({ url: `http://127.0.0.1:${closed}`, maxAttempts: 2 });
    const unreachable = await errorOf(down.check());
    expect(unreachable).toMatchObject({ code: 'STORAGE_UNAVAILABLE', retriable: true });
    expect(unreachable.message).toContain(`127.0.0.1:${closed}`);
    expect(
      await codeOf(down.forRepository('hub/a/b').stat(blobObjectName(sha256(Buffer.from('z'))))),
    ).toBe('STORAGE_UNAVAILABLE');
    expect(() => createRegistryBlobStore(config({ url: '' }))).toThrow(
      expect.objectContaining({ code: 'CONFIG_INVALID' }),
    );
  });
});

/** A port nothing listens on. */
const closedPort = async (): Promise<number> => {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
};

type Handler = (request: IncomingMessage, response: ServerResponse) => void;

/** A local HTTP server that pretends to be a registry: the fault injector. */
const serve = async (handler: Handler): Promise<{ url: string; server: Server }> => {
  const server = createServer(handler);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return { url: `http://127.0.0.1:${port}`, server };
};

describe('registry BlobStore against a faulty upstream', () => {
  const servers: Server[] = [];
  const start = async (handler: Handler) => {
    const started = await serve(handler);
    servers.push(started.server);
    return started.url;
  };
  afterEach(async () => {
    for (const server of servers.splice(0)) {
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    }
  });

  it('fails a read of wrong bytes with DIGEST_INVALID before the last chunk', async () => {
    const good = randomBytes(256 * 1024);
    const digest = sha256(good);
    const evil = Buffer.from(good);
    evil[evil.length - 1] = (evil[evil.length - 1] ?? 0) ^ 0xff;
    const url = await start((request, response) => {
      if (request.url === `/v2/app/blobs/${digest}`) {
        response.writeHead(200, { 'content-length': String(evil.length) });
        // Several writes, so the client sees several chunks.
        let offset = 0;
        const next = () => {
          if (offset >= evil.length) return void response.end();
          const part = evil.subarray(offset, offset + 16 * 1024);
          offset += part.length;
          if (response.write(part)) setImmediate(next);
          else response.once('drain', next);
        };
        next();
      } else {
        response.writeHead(404).end();
      }
    });
    const store = open({ url, username: '', password: '', stripPrefix: '' }).forRepository('app');
    const read = await store.get(blobObjectName(digest));
    expect(read.size).toBe(good.length);
    const received: Buffer[] = [];
    const failure = await new Promise<unknown>((resolve) => {
      read.stream.on('data', (chunk: Buffer) => received.push(chunk));
      read.stream.on('error', resolve);
      read.stream.on('end', () => resolve(undefined));
    });
    expect(failure).toMatchObject({ code: 'DIGEST_INVALID' });
    const delivered = Buffer.concat(received);
    // Some bytes streamed, never the last chunk (the one holding the changed byte).
    expect(delivered.length).toBeGreaterThan(0);
    expect(delivered.length).toBeLessThan(evil.length);
    expect(delivered.equals(evil.subarray(0, delivered.length))).toBe(true);

    // A body longer or shorter than the digest's object fails the same way.
    const short = await start((request, response) => {
      response.writeHead(200, { 'content-length': String(good.length - 1) });
      response.end(good.subarray(0, good.length - 1));
    });
    const shortStore = open({ url: short, username: '', stripPrefix: '' }).forRepository('app');
    const shortRead = await shortStore.get(blobObjectName(digest));
    expect(await codeOf(drain(shortRead.stream))).toBe('DIGEST_INVALID');
  });

  it('refuses a manifest whose bytes do not match Docker-Content-Digest or the reference', async () => {
    const manifest = Buffer.from(JSON.stringify({ schemaVersion: 2, mediaType: 'x' }));
    const other = sha256(Buffer.from('other'));
    const url = await start((request, response) => {
      response.writeHead(200, {
        'content-type': mediaTypes.ociManifest,
        'docker-content-digest': other,
        'content-length': String(manifest.length),
      });
      response.end(manifest);
    });
    const store = open({ url, username: '', stripPrefix: '' }).forRepository('app');
    expect(await codeOf(store.fetchManifest('v1'))).toBe('DIGEST_INVALID');
    expect(await codeOf(store.fetchManifest(other))).toBe('DIGEST_INVALID');
  });

  it('retries an unavailable upstream maxAttempts times, then STORAGE_UNAVAILABLE', async () => {
    let requests = 0;
    const url = await start((_request, response) => {
      requests++;
      response.writeHead(503, { 'content-type': 'application/json' });
      response.end(JSON.stringify({ errors: [{ code: 'UNAVAILABLE', message: 'down' }] }));
    });
    const store = open({ url, username: '', stripPrefix: '', maxAttempts: 3 });
    const error = await errorOf(store.forRepository('app').stat(blobObjectName(sha256(good1))));
    expect(error).toMatchObject({ code: 'STORAGE_UNAVAILABLE', retriable: true });
    expect(error.message).toContain(url.slice('http://'.length));
    expect(requests).toBe(3);
  });

  it('follows a redirect to a blob CDN without sending it the credentials', async () => {
    const bytes = randomBytes(5000);
    const digest = sha256(bytes);
    const seen: Array<string | undefined> = [];
    const cdn = await start((request, response) => {
      seen.push(request.headers.authorization);
      response.writeHead(200, { 'content-length': String(bytes.length) });
      response.end(bytes);
    });
    const basic = `Basic ${Buffer.from('u:p').toString('base64')}`;
    const url = await start((request, response) => {
      if (request.headers.authorization !== basic) {
        response.writeHead(401, { 'www-authenticate': 'Basic realm="fake"' }).end();
        return;
      }
      response.writeHead(307, { location: `${cdn}/blob?sig=1` }).end();
    });
    const store = open({ url, username: 'u', password: 'p', stripPrefix: '' });
    const read = await store.forRepository('app').get(blobObjectName(digest));
    expect((await drain(read.stream)).equals(bytes)).toBe(true);
    expect(seen).toEqual([undefined]);
  });
});

const good1 = Buffer.from('good');

// The Bearer challenge flow against the real registry with token auth, and a token issuer
// run here (it signs with the key the script generated).
describe('registry BlobStore with a token-auth upstream', () => {
  let tokenUpstream: UpstreamRegistry;
  let issuer: TokenIssuer;
  // The issuer listens on its own port: another host, to which the credentials go only
  // because the configuration names it (`realmHosts`).
  let realmHosts: string[] = [];
  let seedCredential = { ...upstreamCredentials, realmHosts };
  beforeAll(async () => {
    tokenUpstream = useUpstreamRegistry('token');
    issuer = await startTokenIssuer(tokenUpstream.vars);
    realmHosts = [new URL(tokenUpstream.vars['UPSTREAM_TOKEN_REALM'] ?? '').host];
    seedCredential = { ...upstreamCredentials, realmHosts };
  }, 300_000);
  afterAll(async () => {
    await issuer?.close();
    tokenUpstream?.stop();
  });

  it('answers the Bearer challenge with a token per repository scope, cached', async () => {
    const repo = freshRepo('bearer');
    const bytes = randomBytes(70_000);
    const digest = await pushBlob(tokenUpstream.url, repo, bytes, seedCredential);
    const store = open({ url: tokenUpstream.url, realmHosts });
    await expect(store.check()).resolves.toBeUndefined();
    const before = issuer.requests.length;
    const scoped = store.forRepository(`hub/${repo}`);
    const name = blobObjectName(digest);
    await expect(scoped.stat(name)).resolves.toEqual({ size: bytes.length });
    expect((await drain((await scoped.get(name)).stream)).equals(bytes)).toBe(true);
    const part = await scoped.get(name, { start: 5, end: 9 });
    expect((await drain(part.stream)).equals(bytes.subarray(5, 10))).toBe(true);
    // One token for the repository's pull scope served every read.
    expect(issuer.requests.slice(before)).toEqual([[`repository:${repo}:pull`]]);

    const otherRepo = freshRepo('bearer');
    await pushBlob(tokenUpstream.url, otherRepo, bytes, seedCredential);
    const mark = issuer.requests.length;
    await expect(store.forRepository(`hub/${otherRepo}`).stat(name)).resolves.toEqual({
      size: bytes.length,
    });
    expect(issuer.requests.slice(mark)).toEqual([[`repository:${otherRepo}:pull`]]);
  });

  it('sends the credentials to no realm host it was not given', async () => {
    const refusedBefore = issuer.refused;
    const untrusted = open({ url: tokenUpstream.url });
    expect(await codeOf(untrusted.check())).toBe('CONFIG_INVALID');
    // Asked without them: the issuer refused an anonymous request.
    expect(issuer.refused).toBeGreaterThan(refusedBefore);
  });

  it('reports credentials the token endpoint refuses as CONFIG_INVALID', async () => {
    const refusedBefore = issuer.refused;
    const wrong = open({ url: tokenUpstream.url, password: 'wrong', realmHosts });
    expect(await codeOf(wrong.check())).toBe('CONFIG_INVALID');
    const read = await errorOf(
      wrong.forRepository('hub/some/app').get(blobObjectName(sha256(Buffer.from('q')))),
    );
    expect(read).toMatchObject({ code: 'CONFIG_INVALID' });
    expect(issuer.refused).toBeGreaterThan(refusedBefore);
    const anonymous = open({ url: tokenUpstream.url, username: '', password: '' });
    expect(await codeOf(anonymous.check())).toBe('CONFIG_INVALID');
  });
});

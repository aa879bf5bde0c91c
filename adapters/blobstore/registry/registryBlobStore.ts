import { createHash } from 'node:crypto';
import type { IncomingMessage } from 'node:http';
import { Agent as HttpAgent, request as httpRequest } from 'node:http';
import { Agent as HttpsAgent, request as httpsRequest } from 'node:https';
import { Transform } from 'node:stream';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Static } from '@sinclair/typebox';
import { Type } from '@sinclair/typebox';
import type {
  BlobStore,
  ByteRange,
  Digest,
  ErrorCode,
  ObjectRead,
  ObjectStat,
} from '../../../domain';
import {
  ShoalError,
  digestAlgorithm,
  digestOfObjectName,
  errorCodes,
  isShoalError,
  orThrow,
  parseDigest,
  parseObjectName,
  parseRepoName,
  parseTag,
  resolveRange,
  truncate,
} from '../../../domain';
import type { BufferedResponse } from '../../registry/registryAuth';
import {
  createRegistryAuth,
  headerOf,
  manifestAccept,
  parseChallenge,
  parseOciError,
} from '../../registry/registryAuth';

/** The `registry` backend's configuration; every field has a default. */
export const RegistryBackendConfigSchema = Type.Object(
  {
    url: Type.String({
      default: '',
      description: 'base URL of the upstream OCI registry, e.g. http://127.0.0.1:5001; must be set',
    }),
    username: Type.String({
      default: '',
      description:
        'user for Basic auth, or for the token request of a Bearer challenge; empty: anonymous',
    }),
    password: Type.String({
      default: '',
      description: 'password of that user (never logged)',
    }),
    stripPrefix: Type.String({
      default: '',
      description:
        'leading path removed from the Shoal repository to name the upstream one: with hub/, ' +
        'Shoal repository hub/library/alpine reads library/alpine upstream; empty: same name',
    }),
    timeoutMs: Type.Integer({
      default: 30_000,
      minimum: 1,
      description:
        'inactivity timeout of a request socket (connect, answer, and each read of a body): ' +
        'a read stream left unread for this long is closed with an error',
    }),
    maxAttempts: Type.Integer({
      default: 3,
      minimum: 1,
      description:
        'tries per request when the upstream cannot be reached or answers 5xx, 429 or 408 ' +
        '(with a short backoff); a body already being streamed is never retried',
    }),
    insecure: Type.Boolean({
      default: false,
      description: 'accept any TLS certificate from an https upstream (tests only)',
    }),
  },
  { default: {} },
);

export type RegistryBackendConfig = Static<typeof RegistryBackendConfigSchema>;

export type RegistryBlobStoreConfig = RegistryBackendConfig & {
  /** The backend's name in `BlobPersisted` and in messages (default `registry`). */
  readonly name?: string;
};

export type RegistryBlobStoreDeps = {
  /** Milliseconds since the epoch, for bearer token expiry (default `Date.now`). */
  readonly now?: () => number;
};

/** A manifest read from the upstream, its digest verified. */
export type UpstreamManifest = {
  readonly bytes: Buffer;
  /** The `Content-Type` the upstream sent, else the manifest's `mediaType` field, else ''. */
  readonly mediaType: string;
  /** The digest of `bytes`: the reference when it was one, else `Docker-Content-Digest`. */
  readonly digest: Digest;
};

/** The store of one repository: reads `/v2/<upstream repository>/…`. */
export type RepositoryRegistryBlobStore = BlobStore & {
  readonly readOnly: true;
  /** The upstream's name of this repository (the Shoal name less `stripPrefix`). */
  readonly upstreamRepository: string;
  /** A manifest by tag or digest, verified; `MANIFEST_UNKNOWN` when the upstream has none. */
  fetchManifest(reference: string): Promise<UpstreamManifest>;
};

export type RegistryBlobStore = Omit<BlobStore, 'forRepository'> & {
  readonly readOnly: true;
  check(): Promise<void>;
  forRepository(repo: string): RepositoryRegistryBlobStore;
  /** `forRepository(repo).fetchManifest(reference)`. */
  fetchManifest(repo: string, reference: string): Promise<UpstreamManifest>;
  /** Closes idle keep-alive connections (they never keep the process alive). */
  close(): void;
};

/** Registries cap manifests at 4 MiB; the CNCF registry refuses larger ones. */
const maxManifestBytes = 4 * 1024 * 1024;
/** Error bodies and the token answer are read into memory up to this. */
const maxSmallBody = 1024 * 1024;
const maxRedirects = 5;
const redirects = new Set([301, 302, 303, 307, 308]);

/**
 * A read-only BlobStore that pulls through from another OCI registry (the CNCF registry,
 * Harbor, Docker Hub, a Shoal proxy): `forRepository(repo)` reads the object named by
 * {@link blobObjectName} from `GET /v2/<repo less stripPrefix>/blobs/<digest>`, and, when the
 * upstream has no such blob, from `/v2/<repo>/manifests/<digest>` (a manifest pulled by digest
 * is an object the origin stores too). Names that are no blob object name are missing.
 * The unscoped store refuses reads with `PARAMETER_INVALID`: a registry addresses blobs by
 * repository. `put` and `delete` fail with `UNSUPPORTED`, and so does `list` (registries
 * list repositories and tags, not blobs).
 *
 * **Verification.** A whole read hashes the bytes as they stream and holds back the last
 * chunk until the hash is checked: when the upstream sends bytes that are not the digest's
 * (or too few, or too many), the stream fails with `DIGEST_INVALID` before its last byte, so a
 * caller that pipes it into an atomic `put` stores nothing. A ranged read cannot be verified
 * (the digest covers the whole object): its bytes pass through as the upstream sent them.
 * A ranged read costs a `HEAD` (the size, for `RANGE_INVALID`) and a `GET` with `Range`; an
 * upstream that ignores `Range` (manifests) is sliced here.
 *
 * **Auth.** Anonymous, Basic, or the `WWW-Authenticate: Bearer realm=…,service=…,scope=…`
 * challenge: a token for `repository:<repo>:pull` fetched from the realm (with the basic
 * credentials when configured), cached per scope until it expires, one retry per 401. The
 * handshake is the replicator's (adapters/registry/registryAuth.ts). Redirects (blob CDNs) are
 * followed, without the `Authorization` header when they leave the registry's origin.
 *
 * **Errors.** `STORAGE_UNAVAILABLE` (retriable) when the upstream cannot be reached or answers
 * 5xx/429 after `maxAttempts`; `CONFIG_INVALID` when it refuses the credentials (401 after the
 * handshake); `DENIED` when it refuses the repository to them (403, `insufficient_scope`).
 * Every message names the backend, the upstream and the repository.
 */
export const createRegistryBlobStore = (
  config: RegistryBlobStoreConfig,
  deps: RegistryBlobStoreDeps = {},
): RegistryBlobStore => {
  const name = config.name ?? 'registry';
  let base: URL;
  try {
    base = new URL(config.url);
  } catch {
    throw new ShoalError(
      'CONFIG_INVALID',
      config.url === ''
        ? `registry backend "${name}": url must be set, e.g. http://127.0.0.1:5001`
        : `registry backend "${name}": url "${truncate(config.url)}" is not a URL`,
    );
  }
  if (base.protocol !== 'http:' && base.protocol !== 'https:') {
    throw new ShoalError(
      'CONFIG_INVALID',
      `registry backend "${name}": url "${truncate(config.url)}" is not http(s)`,
    );
  }
  const origin = base.origin;
  const label = `registry backend "${name}" (${origin})`;
  const { timeoutMs, maxAttempts } = config;
  const stripPrefix = config.stripPrefix.replace(/\/+$/, '');
  const credential =
    config.username !== '' ? { username: config.username, password: config.password } : undefined;
  const agent =
    base.protocol === 'https:'
      ? new HttpsAgent({ keepAlive: true, maxSockets: 32, rejectUnauthorized: !config.insecure })
      : new HttpAgent({ keepAlive: true, maxSockets: 32 });

  const unreachable = (url: URL, error: unknown) =>
    new ShoalError(
      'STORAGE_UNAVAILABLE',
      `${label}: cannot reach ${url.origin === origin ? 'the upstream' : url.origin}: ${
        (error as { code?: string }).code ?? (error as Error).message ?? String(error)
      }`,
      { cause: error },
    );

  /** One request; resolves with the response head, its body unread. */
  const send = (method: string, url: URL, headers: Record<string, string>) =>
    new Promise<IncomingMessage>((resolve, reject) => {
      const https = url.protocol === 'https:';
      const request = (https ? httpsRequest : httpRequest)(url, {
        method,
        headers: { 'user-agent': 'shoal-registry-backend', ...headers },
        ...(url.origin === origin ? { agent } : {}),
        ...(https && config.insecure && { rejectUnauthorized: false }),
      });
      // The socket's inactivity timeout, also while the caller reads the body.
      request.setTimeout(timeoutMs, () =>
        request.destroy(new Error(`no progress for ${timeoutMs} ms`)),
      );
      request.on('error', (error) => reject(unreachable(url, error)));
      request.on('response', resolve);
      request.end();
    });

  /** Reads a body into memory, up to `cap` bytes (the rest is dropped, the socket closed). */
  const readBody = (response: IncomingMessage, url: URL, cap = maxSmallBody) =>
    new Promise<{ body: Buffer; truncated: boolean }>((resolve, reject) => {
      const chunks: Buffer[] = [];
      let size = 0;
      response.on('data', (chunk: Buffer) => {
        size += chunk.length;
        if (size <= cap) chunks.push(chunk);
        else {
          response.destroy();
          resolve({ body: Buffer.concat(chunks), truncated: true });
        }
      });
      response.on('error', (error) => reject(unreachable(url, error)));
      response.on('end', () => resolve({ body: Buffer.concat(chunks), truncated: false }));
    });

  const buffered = async (response: IncomingMessage, url: URL): Promise<BufferedResponse> => ({
    status: response.statusCode ?? 0,
    headers: response.headers,
    body: (await readBody(response, url)).body,
  });

  const failure = (
    method: string,
    url: URL,
    response: BufferedResponse,
    repo: string | undefined,
  ): ShoalError => {
    const { status } = response;
    const { code, message } = parseOciError(response.body);
    const what = repo === undefined ? '' : ` for repository ${repo}`;
    const text = `${label}: ${method} ${truncate(url.pathname, 160)}${what}: HTTP ${status}${
      code ? ` ${code}` : ''
    }${message ? `: ${truncate(message, 200)}` : ''}`;
    const detail = { backend: name, status, ...(repo !== undefined && { repository: repo }) };
    if (status >= 500 || status === 429 || status === 408) {
      return new ShoalError('STORAGE_UNAVAILABLE', text, { detail });
    }
    if (status === 401) {
      const challenge = parseChallenge(headerOf(response.headers, 'www-authenticate'));
      if (challenge?.params['error'] === 'insufficient_scope') {
        return new ShoalError('DENIED', `${text} (the credentials do not grant pull)`, { detail });
      }
      const who = credential === undefined ? 'no credentials' : `user "${credential.username}"`;
      return new ShoalError(
        'CONFIG_INVALID',
        `${text} (the upstream refuses ${who}: check username and password)`,
        { detail },
      );
    }
    if (status === 403) return new ShoalError('DENIED', text, { detail });
    const known = code !== undefined && code in errorCodes ? (code as ErrorCode) : 'INTERNAL';
    return new ShoalError(known, text, { detail });
  };

  const auth = createRegistryAuth({
    baseUrl: origin,
    ...(credential !== undefined && { credential }),
    ...(deps.now !== undefined && { now: deps.now }),
    get: async (url, headers) => buffered(await send('GET', url, headers), url),
    refused: (url, response) => {
      const error = failure('GET', url, response, undefined);
      const refusal = response.status === 401 || response.status === 403;
      return refusal
        ? new ShoalError('CONFIG_INVALID', `${error.message} (the token endpoint refused)`, {
            detail: error.detail ?? {},
          })
        : error;
    },
  });

  /**
   * A request with auth and redirects; one retry after answering a 401's challenge, which
   * fails at once when there is nothing to answer it with.
   */
  const authenticated = async (
    method: string,
    url: URL,
    scope: string,
    headers: Record<string, string>,
    repo: string | undefined,
  ): Promise<{ response: IncomingMessage; url: URL }> => {
    const once = async () => {
      let target = url;
      for (let hop = 0; ; hop++) {
        const authorization = target.origin === origin ? auth.header(scope) : undefined;
        const response = await send(method, target, {
          ...headers,
          ...(authorization !== undefined && { authorization }),
        });
        const location = headerOf(response.headers, 'location');
        if (!redirects.has(response.statusCode ?? 0) || location === undefined) {
          return { response, url: target };
        }
        discard(response);
        if (hop === maxRedirects) {
          throw new ShoalError('STORAGE_UNAVAILABLE', `${label}: more than 5 redirects`, {
            retriable: false,
          });
        }
        target = new URL(location, target);
      }
    };
    const first = await once();
    if (first.response.statusCode !== 401) return first;
    const challenged = await buffered(first.response, first.url);
    if (!(await auth.answer(headerOf(challenged.headers, 'www-authenticate'), scope))) {
      throw failure(method, first.url, challenged, repo);
    }
    return once();
  };

  /**
   * A request that is retried while the upstream is unavailable; resolves with a response
   * whose status is in `expect` (body unread), else throws the mapped error.
   */
  const call = async (
    method: 'GET' | 'HEAD',
    path: string,
    options: {
      scope: string;
      repo?: string;
      headers?: Record<string, string>;
      expect: readonly number[];
    },
  ): Promise<IncomingMessage> => {
    const url = new URL(path, origin);
    for (let attempt = 1; ; attempt++) {
      try {
        const { response, url: where } = await authenticated(
          method,
          url,
          options.scope,
          options.headers ?? {},
          options.repo,
        );
        if (options.expect.includes(response.statusCode ?? 0)) return response;
        throw failure(method, where, await buffered(response, where), options.repo);
      } catch (error) {
        const retriable = isShoalError(error, 'STORAGE_UNAVAILABLE') && error.retriable;
        if (!retriable || attempt >= maxAttempts) throw error;
        await sleep(Math.min(2000, 100 * 2 ** (attempt - 1)));
      }
    }
  };

  const unscoped = () =>
    Promise.reject(
      new ShoalError(
        'PARAMETER_INVALID',
        `${label}: the registry backend needs a repository (use forRepository)`,
        { detail: { backend: name } },
      ),
    );

  const unsupported = (what: string) =>
    Promise.reject(
      new ShoalError('UNSUPPORTED', `${label} is read-only: it cannot ${what}`, {
        detail: { backend: name },
      }),
    );

  /** An iterable whose first step fails: the port's `list` is not asynchronous itself. */
  const refuseList = (): AsyncIterable<string> => ({
    [Symbol.asyncIterator]: () => ({
      next: () =>
        Promise.reject(
          new ShoalError('UNSUPPORTED', `${label} cannot list its objects (registries list tags)`, {
            detail: { backend: name },
          }),
        ),
    }),
  });

  /** The digest an object name stands for; names with a prefix (`cluster-a/blobs/…`) too. */
  const digestOf = (objectName: string): Digest | undefined => {
    orThrow(parseObjectName(objectName));
    const parts = objectName.split('/');
    return parts.length < 4 ? undefined : digestOfObjectName(parts.slice(-4).join('/'));
  };

  const upstreamOf = (repo: string): string => {
    let upstream = repo;
    if (stripPrefix !== '') {
      if (!repo.startsWith(`${stripPrefix}/`)) {
        throw new ShoalError(
          'PARAMETER_INVALID',
          `${label}: repository ${truncate(repo)} is not under its stripPrefix "${stripPrefix}/"`,
          { detail: { backend: name, repository: truncate(repo) } },
        );
      }
      upstream = repo.slice(stripPrefix.length + 1);
    }
    return orThrow(parseRepoName(upstream));
  };

  const scoped = (repo: string): RepositoryRegistryBlobStore => {
    let upstream: string;
    try {
      upstream = upstreamOf(repo);
    } catch (error) {
      // A repository this backend cannot serve: every read says why.
      const fail = () => Promise.reject(error);
      return {
        name,
        readOnly: true,
        upstreamRepository: '',
        stat: fail,
        get: fail,
        put: () => unsupported('store objects'),
        delete: () => unsupported('delete objects'),
        list: refuseList,
        fetchManifest: fail,
      };
    }
    const scope = `repository:${upstream}:pull`;
    const where = `${upstream} (Shoal ${repo})`;
    const pathOf = (kind: Kind, reference: string) => `/v2/${upstream}/${kind}/${reference}`;
    const acceptOf = (kind: Kind): Record<string, string> =>
      kind === 'manifests' ? { accept: manifestAccept } : {};
    const unknown = (objectName: string) =>
      new ShoalError('BLOB_UNKNOWN', `${label}: ${where} has no object ${objectName}`, {
        detail: { name: objectName, backend: name, repository: upstream },
      });

    const sizeOf = (response: IncomingMessage, what: string): number => {
      const size = Number(headerOf(response.headers, 'content-length'));
      if (!Number.isSafeInteger(size) || size < 0) {
        response.destroy();
        throw new ShoalError(
          'STORAGE_UNAVAILABLE',
          `${label}: ${what} in ${where} came without a Content-Length`,
          { retriable: false },
        );
      }
      return size;
    };

    /** Where the upstream keeps a digest (blob, else manifest) and its size. */
    const locate = async (digest: Digest): Promise<{ kind: Kind; size: number } | undefined> => {
      for (const kind of kinds) {
        const response = await call('HEAD', pathOf(kind, digest), {
          scope,
          repo: upstream,
          headers: acceptOf(kind),
          expect: [200, 404],
        });
        discard(response);
        if (response.statusCode === 200) return { kind, size: sizeOf(response, digest) };
      }
      return undefined;
    };

    const readWhole = async (objectName: string, digest: Digest): Promise<ObjectRead> => {
      for (const kind of kinds) {
        const response = await call('GET', pathOf(kind, digest), {
          scope,
          repo: upstream,
          headers: acceptOf(kind),
          expect: [200, 404],
        });
        if (response.statusCode === 404) {
          discard(response);
          continue;
        }
        const size = sizeOf(response, digest);
        const stream = relay(response, verifying(digest, size, `${label}: ${where}`), label);
        return { stream, size, start: 0, end: size - 1 };
      }
      throw unknown(objectName);
    };

    const readRange = async (
      objectName: string,
      digest: Digest,
      range: ByteRange,
    ): Promise<ObjectRead> => {
      const located = await locate(digest);
      if (located === undefined) throw unknown(objectName);
      const { size, kind } = located;
      const { start, end } = orThrow(resolveRange(size, range));
      const response = await call('GET', pathOf(kind, digest), {
        scope,
        repo: upstream,
        headers: { ...acceptOf(kind), range: `bytes=${start}-${end}` },
        expect: [200, 206, 404, 416],
      });
      if (response.statusCode === 404) {
        discard(response);
        throw unknown(objectName);
      }
      if (response.statusCode === 416) {
        discard(response);
        throw new ShoalError('RANGE_INVALID', `${label}: ${where} refused range ${start}-${end}`, {
          detail: { start, end, size },
        });
      }
      const partial = response.statusCode === 206;
      if (partial) {
        const match = /^bytes (\d+)-(\d+)\/(\d+|\*)$/.exec(
          headerOf(response.headers, 'content-range') ?? '',
        );
        if (match === null || Number(match[1]) !== start || Number(match[2]) !== end) {
          response.destroy();
          throw new ShoalError(
            'STORAGE_UNAVAILABLE',
            `${label}: ${where} answered range ${start}-${end} of ${digest} with ` +
              `"${headerOf(response.headers, 'content-range') ?? 'no Content-Range'}"`,
            { retriable: false },
          );
        }
      }
      const through = slicing(partial ? 0 : start, end - start + 1, `${label}: ${where}`);
      return { stream: relay(response, through, label), size, start, end };
    };

    const fetchManifest = async (reference: string): Promise<UpstreamManifest> => {
      const byDigest = reference.includes(':');
      if (byDigest) orThrow(parseDigest(reference));
      else orThrow(parseTag(reference));
      const response = await call('GET', pathOf('manifests', reference), {
        scope,
        repo: upstream,
        headers: { accept: manifestAccept },
        expect: [200, 404],
      });
      const url = new URL(pathOf('manifests', reference), origin);
      if (response.statusCode === 404) {
        discard(response);
        throw new ShoalError(
          'MANIFEST_UNKNOWN',
          `${label}: ${where} has no manifest ${truncate(reference)}`,
          { detail: { backend: name, repository: upstream, reference: truncate(reference) } },
        );
      }
      const { body, truncated } = await readBody(response, url, maxManifestBytes);
      if (truncated) {
        throw new ShoalError(
          'MANIFEST_INVALID',
          `${label}: manifest ${truncate(reference)} of ${where} is larger than 4 MiB`,
        );
      }
      const announced = byDigest ? reference : headerOf(response.headers, 'docker-content-digest');
      const expected = announced === undefined ? undefined : parseDigest(announced);
      if (expected !== undefined && !expected.ok) {
        throw new ShoalError(
          'DIGEST_INVALID',
          `${label}: ${where} sent manifest ${truncate(reference)} with the invalid ` +
            `Docker-Content-Digest "${truncate(announced ?? '')}"`,
        );
      }
      const algorithm = expected?.ok ? digestAlgorithm(expected.value) : 'sha256';
      const digest = `${algorithm}:${createHash(algorithm).update(body).digest('hex')}` as Digest;
      if (expected?.ok && expected.value !== digest) {
        throw new ShoalError(
          'DIGEST_INVALID',
          `${label}: manifest ${truncate(reference)} of ${where} hashes to ${digest}, not ` +
            `${expected.value}`,
          { detail: { backend: name, repository: upstream, expected: expected.value, digest } },
        );
      }
      return { bytes: body, mediaType: mediaTypeOf(response, body), digest };
    };

    return {
      name,
      readOnly: true,
      upstreamRepository: upstream,
      stat: async (objectName): Promise<ObjectStat | undefined> => {
        const digest = digestOf(objectName);
        if (digest === undefined) return undefined;
        const located = await locate(digest);
        return located === undefined ? undefined : { size: located.size };
      },
      get: async (objectName, range) => {
        const digest = digestOf(objectName);
        if (digest === undefined) throw unknown(objectName);
        return range === undefined
          ? readWhole(objectName, digest)
          : readRange(objectName, digest, range);
      },
      put: async (objectName) => {
        orThrow(parseObjectName(objectName));
        return unsupported('store objects');
      },
      delete: async (objectName) => {
        orThrow(parseObjectName(objectName));
        return unsupported('delete objects');
      },
      list: refuseList,
      fetchManifest,
    };
  };

  return {
    name,
    readOnly: true,
    stat: async (objectName) => {
      orThrow(parseObjectName(objectName));
      return unscoped();
    },
    get: async (objectName) => {
      orThrow(parseObjectName(objectName));
      return unscoped();
    },
    put: async (objectName) => {
      orThrow(parseObjectName(objectName));
      return unsupported('store objects');
    },
    delete: async (objectName) => {
      orThrow(parseObjectName(objectName));
      return unsupported('delete objects');
    },
    list: refuseList,
    forRepository: scoped,
    fetchManifest: (repo, reference) => scoped(repo).fetchManifest(reference),
    check: async () => {
      const response = await call('GET', '/v2/', { scope: '', expect: [200, 404] });
      discard(response);
      if (response.statusCode === 404) {
        throw new ShoalError(
          'CONFIG_INVALID',
          `${label}: GET /v2/ answered 404: the url is not an OCI registry`,
        );
      }
    },
    close: () => agent.destroy(),
  };
};

type Kind = 'blobs' | 'manifests';
/** Blobs first; a manifest by digest is the fallback (registries keep them apart). */
const kinds: readonly Kind[] = ['blobs', 'manifests'];

const mediaTypeOf = (response: IncomingMessage, body: Buffer): string => {
  const header = (headerOf(response.headers, 'content-type') ?? '').split(';')[0]?.trim() ?? '';
  if (header !== '' && header !== 'application/octet-stream') return header;
  try {
    const parsed = JSON.parse(body.toString('utf8')) as { mediaType?: unknown };
    return typeof parsed.mediaType === 'string' ? parsed.mediaType : header;
  } catch {
    return header;
  }
};

/**
 * Pipes an upstream body into `through`, which the caller reads. A failing connection fails
 * `through` with `STORAGE_UNAVAILABLE`; a caller that destroys `through` closes the connection.
 */
const relay = (response: IncomingMessage, through: Transform, label: string): Transform => {
  response.on('error', (error) =>
    through.destroy(
      isShoalError(error)
        ? error
        : new ShoalError(
            'STORAGE_UNAVAILABLE',
            `${label}: the upstream connection failed mid-body: ${
              (error as { code?: string }).code ?? error.message
            }`,
            { cause: error },
          ),
    ),
  );
  through.on('close', () => {
    if (!response.complete) response.destroy();
  });
  response.pipe(through);
  return through;
};

/**
 * Hashes what passes and holds back the latest chunk: the last one is released only when
 * the whole body has `size` bytes hashing to `digest`, else the stream fails with
 * `DIGEST_INVALID` and the bytes held back are dropped.
 */
const verifying = (digest: Digest, size: number, where: string): Transform => {
  const algorithm = digestAlgorithm(digest);
  const hash = createHash(algorithm);
  let held: Buffer | undefined;
  let received = 0;
  return new Transform({
    transform(chunk: Buffer, _encoding, done) {
      if (chunk.length === 0) return done();
      received += chunk.length;
      if (received > size) {
        return done(
          new ShoalError('DIGEST_INVALID', `${where}: ${digest} is longer than ${size} bytes`),
        );
      }
      hash.update(chunk);
      const release = held;
      held = chunk;
      done(null, release);
    },
    flush(done) {
      const actual = `${algorithm}:${hash.digest('hex')}`;
      if (received !== size || actual !== digest) {
        done(
          new ShoalError(
            'DIGEST_INVALID',
            `${where}: the upstream sent ${received} bytes hashing to ${actual} for ${digest} ` +
              `(${size} bytes announced)`,
            { detail: { digest, digestReceived: actual, size, received } },
          ),
        );
        return;
      }
      if (held !== undefined) this.push(held);
      done();
    },
  });
};

/** Skips `skip` bytes, passes `length`, drops the rest; fails if fewer than `length` came. */
const slicing = (skip: number, length: number, where: string): Transform => {
  let offset = 0;
  let passed = 0;
  return new Transform({
    transform(chunk: Buffer, _encoding, done) {
      const from = Math.max(0, skip - offset);
      offset += chunk.length;
      const want = length - passed;
      if (from >= chunk.length || want <= 0) return done();
      const part = chunk.subarray(from, Math.min(chunk.length, from + want));
      passed += part.length;
      done(null, part);
    },
    flush(done) {
      done(
        passed === length
          ? undefined
          : new ShoalError(
              'STORAGE_UNAVAILABLE',
              `${where}: the upstream sent ${passed} of the ${length} bytes of the range`,
            ),
      );
    },
  });
};

/** Drops a body nobody reads; a connection that fails meanwhile is of no concern. */
const discard = (response: IncomingMessage): void => {
  response.on('error', () => undefined);
  response.resume();
};

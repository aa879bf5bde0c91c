import { createHash } from 'node:crypto';
import { Readable, Transform } from 'node:stream';
import type { Digest } from '../../domain';
import { ShoalError, digestAlgorithm, errorCodes, manifestAccept, truncate } from '../../domain';
import type { ErrorCode } from '../../domain';
import {
  HttpExchangeError,
  createHttpTransport,
  headerOf as header,
  readBody,
} from '../../kit/http/transport';
import type { BufferedResponse, RegistryCredential } from './registryAuth';
import { createRegistryAuth, parseOciError } from './registryAuth';

/**
 * A client of the OCI Distribution API for pushing to another registry — a Shoal proxy, the
 * CNCF registry, Harbor, zot. It does what replication needs and nothing more: existence
 * checks, cross-repository mounts, monolithic and chunked blob uploads (verifying what it
 * sends), manifest `PUT`/`HEAD`/`GET`/`DELETE` and tag lists.
 *
 * Authentication follows the registry's `WWW-Authenticate` challenge: `Basic` with the
 * configured username and password, or `Bearer` — a token fetched from the realm for the
 * repository scope (with the configured credentials, or anonymously), cached until it
 * expires. A `{token}` credential is sent as a bearer token as is.
 *
 * Errors are `ShoalError`s: `SERVICE_UNAVAILABLE` (retriable) when the registry cannot be
 * reached, answers 5xx or 429; `DENIED` for 401/403; the registry's OCI error code otherwise
 * (`MANIFEST_INVALID`, `BLOB_UNKNOWN`, …) with its message.
 */
export type RegistryClient = {
  readonly baseUrl: string;
  /** `GET /v2/`: reachable, and authenticated when it asks. */
  ping(): Promise<void>;
  /** The blob's size when the repository has it. */
  blobSize(repo: string, digest: Digest): Promise<number | undefined>;
  /**
   * Links a blob the registry holds in `from` into `repo` without moving bytes. False when the
   * registry would not (it then opened an upload session, which is cancelled).
   */
  mountBlob(repo: string, digest: Digest, from: string): Promise<boolean>;
  /**
   * Uploads a blob from `open(start, end)` (inclusive byte range of the source): in one
   * request up to `chunkSize` bytes, else in chunks. The registry makes it visible only when
   * the upload is committed with its digest, after the last byte; the bytes sent are hashed
   * and checked before that commit. On failure the session is cancelled (best effort).
   */
  uploadBlob(
    repo: string,
    blob: { readonly digest: Digest; readonly size: number },
    open: (start: number, end: number) => Promise<Readable>,
    options: { chunkSize: number; onProgress?: (sent: number) => void; signal?: AbortSignal },
  ): Promise<void>;
  /** `HEAD` of a manifest by tag or digest: its digest and media type, or undefined. */
  manifestInfo(
    repo: string,
    reference: string,
  ): Promise<{ digest?: string; mediaType?: string } | undefined>;
  getManifest(
    repo: string,
    reference: string,
  ): Promise<{ bytes: Buffer; mediaType: string; digest?: string } | undefined>;
  /** Resolves with the digest the registry reports (`Docker-Content-Digest`), if it does. */
  putManifest(
    repo: string,
    reference: string,
    bytes: Buffer,
    mediaType: string,
  ): Promise<string | undefined>;
  /**
   * Pushes a manifest that has a `subject` (a signature, an SBOM) by its digest. `indexed`:
   * the registry answered with `OCI-Subject`, so it lists the manifest in its referrers API;
   * otherwise the pusher keeps the subject's referrers tag (`<alg>-<hex>`) itself, as the OCI
   * distribution spec's fallback asks.
   */
  putReferrer(
    repo: string,
    digest: string,
    bytes: Buffer,
    mediaType: string,
  ): Promise<{ readonly indexed: boolean }>;
  /**
   * Whether the registry serves the referrers API (`GET /v2/<repo>/referrers/<digest>`
   * answers 200; registries without it answer 404).
   */
  hasReferrersApi(repo: string, subject: string): Promise<boolean>;
  /**
   * Deletes a manifest by tag or digest. `absent`: there was nothing to delete; `unsupported`:
   * the registry refuses this kind of delete (the CNCF registry answers 400 to a delete by tag,
   * registries without delete enabled 405).
   */
  deleteManifest(repo: string, reference: string): Promise<'deleted' | 'absent' | 'unsupported'>;
  /** Every tag of a repository (following `Link` pages); empty when the repository is unknown. */
  listTags(repo: string, options?: { max?: number }): Promise<string[]>;
  close(): void;
};

export type RegistryClientOptions = {
  readonly baseUrl: string;
  readonly credential?: RegistryCredential;
  /** Idle timeout of one request (no bytes either way for this long), default 60 s. */
  readonly timeoutMs?: number;
  /** Sent with manifest writes and deletes, e.g. `Shoal-Replicated-From: <cluster>`. */
  readonly writeHeaders?: Readonly<Record<string, string>>;
  readonly userAgent?: string;
  /** PEM CA bundle an https registry is checked against (instead of the system roots). */
  readonly ca?: Buffer;
};

/** Largest response body read into memory (manifests are capped at 4 MiB by registries). */
const maxResponseBytes = 16 * 1024 * 1024;

type Body = Buffer | { readonly open: () => Promise<Readable>; readonly length: number };

type Exchange = BufferedResponse;

export const createRegistryClient = (options: RegistryClientOptions): RegistryClient => {
  const base = new URL(options.baseUrl);
  const baseUrl = `${base.protocol}//${base.host}`;
  const timeoutMs = options.timeoutMs ?? 60_000;
  const credential = options.credential;
  const transport = createHttpTransport({
    idleTimeoutMs: timeoutMs,
    connections: 16,
    userAgent: options.userAgent ?? 'shoal-replicator',
    ...(options.ca !== undefined && { tls: () => ({ ca: options.ca }) }),
  });

  const unreachable = (what: string, error: unknown) => {
    const cause = error instanceof HttpExchangeError ? error.cause : error;
    return new ShoalError(
      'SERVICE_UNAVAILABLE',
      `cannot reach ${what}: ${
        (cause as { code?: string }).code ?? (cause as Error).message ?? String(cause)
      }`,
      { cause },
    );
  };

  /** One HTTP exchange; the response body is read whole (capped). */
  const exchange = async (
    method: string,
    url: URL,
    headers: Record<string, string>,
    body?: Buffer | Readable,
    signal?: AbortSignal,
  ): Promise<Exchange> => {
    try {
      const response = await transport.request({
        method,
        url,
        headers,
        ...(body !== undefined && { body }),
        ...(signal !== undefined && { signal }),
      });
      const { bytes } = await readBody(response.body, maxResponseBytes);
      return { status: response.status, headers: response.headers, body: bytes };
    } catch (error) {
      throw unreachable(url.host, error);
    } finally {
      // A registry may answer (an error, a redirect) before it read the whole body.
      if (body instanceof Readable && !body.readableEnded) body.destroy();
    }
  };

  const failure = (method: string, url: URL, response: Exchange): ShoalError => {
    const { code, message } = parseOciError(response.body);
    const where = `${url.host} ${method} ${truncate(url.pathname, 120)}`;
    const text = `${where}: HTTP ${response.status}${code ? ` ${code}` : ''}${
      message ? `: ${truncate(message, 200)}` : ''
    }`;
    const detail = { status: response.status, ...(code !== undefined && { code }) };
    if (response.status >= 500 || response.status === 429 || response.status === 408) {
      return new ShoalError('SERVICE_UNAVAILABLE', text, { detail });
    }
    if (response.status === 401 || response.status === 403) {
      return new ShoalError('DENIED', text, { detail, retriable: true });
    }
    const known = code !== undefined && code in errorCodes ? (code as ErrorCode) : undefined;
    return new ShoalError(known ?? (response.status === 404 ? 'NAME_UNKNOWN' : 'INTERNAL'), text, {
      detail,
    });
  };

  /** The handshake state shared with the registry blob store (registryAuth.ts). */
  const auth = createRegistryAuth({
    baseUrl,
    ...(credential !== undefined && { credential }),
    get: (url, headers) => exchange('GET', url, headers),
    refused: (url, response) => failure('GET', url, response),
  });

  /**
   * A request with authentication: on a 401 it answers the challenge (once) and repeats the
   * request, reopening a streamed body.
   */
  const call = async (
    method: string,
    target: string | URL,
    init: {
      scope: string;
      headers?: Record<string, string>;
      body?: Body;
      expect: readonly number[];
      signal?: AbortSignal;
    },
  ): Promise<Exchange> => {
    const url = typeof target === 'string' ? new URL(target, baseUrl) : target;
    for (let attempt = 0; ; attempt++) {
      const headers: Record<string, string> = { ...init.headers };
      const authorization = auth.header(init.scope, url);
      if (authorization !== undefined) headers['authorization'] = authorization;
      let body: Buffer | Readable | undefined;
      if (init.body !== undefined) {
        if (Buffer.isBuffer(init.body)) {
          body = init.body;
          headers['content-length'] = String(init.body.length);
        } else {
          body = await init.body.open();
          headers['content-length'] = String(init.body.length);
        }
      } else if (method !== 'GET' && method !== 'HEAD') {
        headers['content-length'] = '0';
      }
      const response = await exchange(method, url, headers, body, init.signal);
      if (
        response.status === 401 &&
        attempt === 0 &&
        url.host === base.host &&
        (await auth.answer(header(response.headers, 'www-authenticate'), init.scope))
      ) {
        continue;
      }
      if (!init.expect.includes(response.status)) throw failure(method, url, response);
      return response;
    }
  };

  const scopeOf = (repo: string, ...also: string[]) =>
    [`repository:${repo}:pull,push`, ...also.map((r) => `repository:${r}:pull`)].join(' ');

  const locationOf = (response: Exchange, url: URL): URL => {
    const location = header(response.headers, 'location');
    if (location === undefined) {
      throw new ShoalError('INTERNAL', `${url.host}: upload answered without a Location`);
    }
    return new URL(location, url);
  };

  const cancel = async (location: URL, scope: string) => {
    await call('DELETE', location, { scope, expect: [200, 202, 204, 404] }).catch(() => undefined);
  };

  const startUpload = async (repo: string, signal?: AbortSignal): Promise<URL> => {
    const url = new URL(`/v2/${repo}/blobs/uploads/`, baseUrl);
    const response = await call('POST', url, {
      scope: scopeOf(repo),
      expect: [202],
      ...(signal && { signal }),
    });
    return locationOf(response, url);
  };

  const client: RegistryClient = {
    baseUrl,

    async ping() {
      await call('GET', '/v2/', { scope: '', expect: [200] });
    },

    async blobSize(repo, digest) {
      const response = await call('HEAD', `/v2/${repo}/blobs/${digest}`, {
        scope: scopeOf(repo),
        expect: [200, 404],
      });
      if (response.status === 404) return undefined;
      const length = Number(header(response.headers, 'content-length'));
      return Number.isFinite(length) ? length : 0;
    },

    async mountBlob(repo, digest, from) {
      const url = new URL(`/v2/${repo}/blobs/uploads/`, baseUrl);
      url.searchParams.set('mount', digest);
      url.searchParams.set('from', from);
      const scope = scopeOf(repo, from);
      const response = await call('POST', url, { scope, expect: [201, 202] });
      if (response.status === 201) return true;
      await cancel(locationOf(response, url), scope);
      return false;
    },

    async uploadBlob(repo, blob, open, opts) {
      const scope = scopeOf(repo);
      const algorithm = digestAlgorithm(blob.digest);
      const signal = opts.signal;
      let location = await startUpload(repo, signal);
      // What was sent is hashed as it goes, so a chunked upload is checked before it is
      // committed. A chunk sent again (after an auth challenge) restarts from the state the
      // hash had at its first byte.
      let hash = createHash(algorithm);
      let sent = 0;
      const streamRange = (start: number, end: number) => {
        const before = { hash: hash.copy(), sent };
        return async (): Promise<Readable> => {
          hash = before.hash.copy();
          sent = before.sent;
          if (end < start) return Readable.from([]);
          const source = await open(start, end);
          const meter = new Transform({
            transform(chunk: Buffer, _encoding, done) {
              hash.update(chunk);
              sent += chunk.length;
              opts.onProgress?.(sent);
              done(null, chunk);
            },
          });
          source.on('error', (error) => meter.destroy(error));
          return source.pipe(meter);
        };
      };
      const octets = { 'content-type': 'application/octet-stream' };
      try {
        if (blob.size <= opts.chunkSize) {
          const url = new URL(location);
          url.searchParams.set('digest', blob.digest);
          await call('PUT', url, {
            scope,
            headers: octets,
            body: { open: streamRange(0, blob.size - 1), length: blob.size },
            expect: [201],
            ...(signal && { signal }),
          });
        } else {
          for (let start = 0; start < blob.size; start += opts.chunkSize) {
            const end = Math.min(blob.size, start + opts.chunkSize) - 1;
            const response = await call('PATCH', location, {
              scope,
              headers: { ...octets, 'content-range': `${start}-${end}` },
              body: { open: streamRange(start, end), length: end - start + 1 },
              expect: [202, 204],
              ...(signal && { signal }),
            });
            location = header(response.headers, 'location')
              ? locationOf(response, location)
              : location;
          }
          const hex = hash.digest('hex');
          if (sent !== blob.size || `${algorithm}:${hex}` !== blob.digest) {
            throw new ShoalError(
              'DIGEST_INVALID',
              `the source sent ${sent} bytes hashing to ${algorithm}:${hex}, not ` +
                `${blob.size} bytes of ${blob.digest}: not committed`,
              { retriable: true },
            );
          }
          const url = new URL(location);
          url.searchParams.set('digest', blob.digest);
          await call('PUT', url, { scope, expect: [201], ...(signal && { signal }) });
        }
      } catch (error) {
        await cancel(location, scope);
        throw error;
      }
    },

    async manifestInfo(repo, reference) {
      const response = await call('HEAD', `/v2/${repo}/manifests/${reference}`, {
        scope: scopeOf(repo),
        headers: { accept: manifestAccept },
        expect: [200, 404],
      });
      if (response.status === 404) return undefined;
      const digest = header(response.headers, 'docker-content-digest');
      const mediaType = header(response.headers, 'content-type');
      return { ...(digest && { digest }), ...(mediaType && { mediaType }) };
    },

    async getManifest(repo, reference) {
      const response = await call('GET', `/v2/${repo}/manifests/${reference}`, {
        scope: scopeOf(repo),
        headers: { accept: manifestAccept },
        expect: [200, 404],
      });
      if (response.status === 404) return undefined;
      const digest = header(response.headers, 'docker-content-digest');
      return {
        bytes: response.body,
        mediaType: (header(response.headers, 'content-type') ?? '').split(';')[0] as string,
        ...(digest && { digest }),
      };
    },

    async putManifest(repo, reference, bytes, mediaType) {
      const response = await call('PUT', `/v2/${repo}/manifests/${reference}`, {
        scope: scopeOf(repo),
        headers: { 'content-type': mediaType, ...options.writeHeaders },
        body: bytes,
        expect: [200, 201, 202],
      });
      return header(response.headers, 'docker-content-digest');
    },

    async putReferrer(repo, digest, bytes, mediaType) {
      const response = await call('PUT', `/v2/${repo}/manifests/${digest}`, {
        scope: scopeOf(repo),
        headers: { 'content-type': mediaType, ...options.writeHeaders },
        body: bytes,
        expect: [200, 201, 202],
      });
      return { indexed: header(response.headers, 'oci-subject') !== undefined };
    },

    async hasReferrersApi(repo, subject) {
      const response = await call('GET', `/v2/${repo}/referrers/${subject}`, {
        scope: scopeOf(repo),
        headers: { accept: 'application/vnd.oci.image.index.v1+json' },
        expect: [200, 404],
      });
      return response.status === 200;
    },

    async deleteManifest(repo, reference) {
      const response = await call('DELETE', `/v2/${repo}/manifests/${reference}`, {
        scope: scopeOf(repo),
        headers: { ...options.writeHeaders },
        expect: [200, 202, 204, 400, 404, 405],
      });
      if (response.status === 404) return 'absent';
      if (response.status === 400 || response.status === 405) return 'unsupported';
      return 'deleted';
    },

    async listTags(repo, opts = {}) {
      const max = opts.max ?? 100_000;
      const out: string[] = [];
      let next: URL | undefined = new URL(`/v2/${repo}/tags/list?n=1000`, baseUrl);
      while (next !== undefined && out.length < max) {
        const response: Exchange = await call('GET', next, {
          scope: scopeOf(repo),
          expect: [200, 404],
        });
        if (response.status === 404) return out;
        const parsed = JSON.parse(response.body.toString('utf8')) as { tags?: string[] | null };
        out.push(...(parsed.tags ?? []));
        const link = /<([^>]+)>\s*;\s*rel="?next"?/.exec(header(response.headers, 'link') ?? '');
        next = link === null ? undefined : new URL(link[1] as string, baseUrl);
      }
      return out;
    },

    close() {
      void transport.close().catch(() => undefined);
    },
  };
  return client;
};

import type { ErrorCode } from '../../../domain';
import { ShoalError, errorCodes, truncate } from '../../../domain';
import type { HttpResponse } from '../../../kit/http/transport';
import {
  HttpExchangeError,
  createHttpTransport,
  discard,
  headerOf,
  readBody,
  unavailableStatuses,
} from '../../../kit/http/transport';
import { readCaFile } from '../../../kit/http/caBundle';
import type { BufferedResponse } from '../../registry/registryAuth';
import { createRegistryAuth, parseChallenge, parseOciError } from '../../registry/registryAuth';
import type { RegistryBlobStoreConfig, RegistryBlobStoreDeps } from './config';

/** Error bodies and the token answer are read into memory up to this. */
const maxSmallBody = 1024 * 1024;
const maxRedirects = 5;
const redirects = new Set([301, 302, 303, 307, 308]);

/** The `registry` backend's connection to its upstream: requests with auth and redirects. */
export type Upstream = {
  readonly name: string;
  /** The upstream's origin (`https://host:port`). */
  readonly origin: string;
  /** `registry backend "<name>" (<origin>)`, for messages. */
  readonly label: string;
  /**
   * A request with auth, redirects and retries; resolves with an answer whose status is in
   * `expect` (body unread), else throws the mapped error.
   */
  call(
    method: 'GET' | 'HEAD',
    path: string,
    options: {
      scope: string;
      repo?: string;
      headers?: Record<string, string>;
      expect: readonly number[];
    },
  ): Promise<HttpResponse>;
  /** Closes the connections (idle ones never keep the process alive). */
  close(): void;
};

/**
 * Connects to the upstream registry of a `registry` backend (validating its URL).
 *
 * **Auth.** Anonymous, Basic, or the `WWW-Authenticate: Bearer realm=…,service=…,scope=…`
 * challenge: a token for the scope fetched from the realm (with the basic credentials when
 * configured), cached per scope until it expires, one retry per 401 (adapters/registry/
 * registryAuth.ts). Redirects (blob CDNs) are followed, without the `Authorization` header
 * when they leave the registry's origin.
 *
 * **Errors.** `STORAGE_UNAVAILABLE` (retriable) when the upstream cannot be reached or answers
 * 5xx/429/408 after `maxAttempts` (the transport retries before the first byte, with
 * backoff); `CONFIG_INVALID` when it refuses the credentials (401 after the handshake);
 * `DENIED` when it refuses the repository to them (403, `insufficient_scope`).
 */
export const connectUpstream = (
  config: RegistryBlobStoreConfig,
  deps: RegistryBlobStoreDeps = {},
): Upstream => {
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
  const credential =
    config.username !== ''
      ? {
          username: config.username,
          password: config.password,
          ...(config.realmHosts.length > 0 && { realmHosts: [...config.realmHosts] }),
        }
      : undefined;
  const ca = config.caFile === '' ? undefined : { ca: readCaFile(config.caFile, label) };
  const transport = createHttpTransport({
    idleTimeoutMs: config.timeoutMs,
    maxAttempts: config.maxAttempts,
    retryStatuses: [408, ...unavailableStatuses],
    connections: 32,
    insecure: config.insecure,
    ...(ca !== undefined && { tls: () => ca }),
    userAgent: 'shoal-registry-backend',
  });

  const unreachable = (url: URL, error: unknown) =>
    new ShoalError(
      'STORAGE_UNAVAILABLE',
      `${label}: cannot reach ${url.origin === origin ? 'the upstream' : url.origin}: ${
        (error as { code?: string }).code ?? (error as Error).message ?? String(error)
      }`,
      { cause: error },
    );

  /** One request (retried while the upstream is unavailable); its body unread. */
  const send = async (
    method: string,
    url: URL,
    headers: Record<string, string>,
  ): Promise<HttpResponse> => {
    try {
      return await transport.request({ method, url, headers });
    } catch (error) {
      throw error instanceof HttpExchangeError ? unreachable(url, error.cause) : error;
    }
  };

  const buffered = async (response: HttpResponse, url: URL): Promise<BufferedResponse> => {
    try {
      const { bytes } = await readBody(response.body, maxSmallBody);
      return { status: response.status, headers: response.headers, body: bytes };
    } catch (error) {
      throw unreachable(url, error);
    }
  };

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
  ): Promise<{ response: HttpResponse; url: URL }> => {
    const once = async () => {
      let target = url;
      for (let hop = 0; ; hop++) {
        const authorization = target.origin === origin ? auth.header(scope) : undefined;
        const response = await send(method, target, {
          ...headers,
          ...(authorization !== undefined && { authorization }),
        });
        const location = headerOf(response.headers, 'location');
        if (!redirects.has(response.status) || location === undefined) {
          return { response, url: target };
        }
        discard(response.body);
        if (hop === maxRedirects) {
          throw new ShoalError('STORAGE_UNAVAILABLE', `${label}: more than 5 redirects`, {
            retriable: false,
          });
        }
        target = new URL(location, target);
      }
    };
    const first = await once();
    if (first.response.status !== 401) return first;
    const challenged = await buffered(first.response, first.url);
    if (!(await auth.answer(headerOf(challenged.headers, 'www-authenticate'), scope))) {
      throw failure(method, first.url, challenged, repo);
    }
    return once();
  };

  return {
    name,
    origin,
    label,
    async call(method, path, options) {
      const { response, url } = await authenticated(
        method,
        new URL(path, origin),
        options.scope,
        options.headers ?? {},
        options.repo,
      );
      if (options.expect.includes(response.status)) return response;
      throw failure(method, url, await buffered(response, url), options.repo);
    },
    close: () => void transport.close().catch(() => undefined),
  };
};

import type { Readable } from 'node:stream';
import type { ErrorCode } from '../../domain';
import { ShoalError, errorCodes, isShoalError } from '../../domain';
import type { HttpResponse, RequestBody } from '../../kit/http/transport';
import { SpanKind, inSpan, injectTraceHeaders, otelContext } from './tracing';
import {
  HttpExchangeError,
  createHttpTransport,
  describeHttpError,
  discard,
  readBody,
} from '../../kit/http/transport';
import type { ClientIdentity } from './security/clientIdentity';
import { withIdentityHeaders } from './security/clientIdentity';

export type ServiceRequest = {
  readonly method: string;
  /** Path and query, starting with `/`. */
  readonly path: string;
  readonly headers?: Readonly<Record<string, string | number | undefined>>;
  /** Bytes go with their length; a stream is sent as it comes (chunked unless a length is set). */
  readonly body?: RequestBody;
  readonly signal?: AbortSignal;
};

/** Largest error body read from an answer. */
const maxProblemBytes = 64 * 1024;
/** Largest JSON answer read. */
const maxJsonBytes = 16 * 1024 * 1024;

/**
 * A client of one Shoal service's HTTP API (`baseUrl` may carry a path prefix), on the kit's
 * transport: streaming bodies both ways over keep-alive connections, an idle timeout
 * (`timeoutMs`), no retries (callers know which calls may repeat). Problem Details answers
 * become `ShoalError`s with their codes (an answer without a known code: `codeByStatus`);
 * failures to connect, a connection lost before the answer, or no answer in time become
 * `SERVICE_UNAVAILABLE` (retriable).
 */
export const createServiceClient = (
  baseUrl: string,
  options: {
    timeoutMs?: number;
    connections?: number;
    /** The code of an error answer that names none it knows (default `INTERNAL`). */
    codeByStatus?: (status: number) => ErrorCode;
    /** Who this process is to the service: a client certificate, a service token. */
    identity?: ClientIdentity;
    /** Headers sent with every request (a request's own win). */
    headers?: Readonly<Record<string, string>>;
  } = {},
) => {
  const base = new URL(baseUrl.replace(/\/+$/, ''));
  const prefix = base.pathname === '/' ? '' : base.pathname;
  const url = `${base.origin}${prefix}`;
  const transport = createHttpTransport({
    idleTimeoutMs: options.timeoutMs ?? 60_000,
    connections: options.connections ?? 64,
    ...(options.identity?.tls !== undefined && { tls: options.identity.tls }),
  });
  const codeByStatus = options.codeByStatus ?? (() => 'INTERNAL');

  /**
   * Sends a request; resolves with the answer once its head arrives, whatever its status.
   * Inside traced work, a client span covers the exchange up to the answer's head and the
   * request carries its `traceparent`.
   */
  const request = (req: ServiceRequest): Promise<HttpResponse> =>
    inSpan(
      `${req.method} ${base.host}`,
      {
        kind: SpanKind.CLIENT,
        attributes: {
          'http.request.method': req.method,
          'server.address': base.hostname,
          'url.path': req.path.split('?')[0] ?? req.path,
        },
      },
      async (span) => {
        const headers: Record<string, string | number | undefined> = {
          ...options.headers,
          ...(await withIdentityHeaders(options.identity, req.headers)),
        };
        if (span !== undefined) {
          const trace: Record<string, string> = {};
          injectTraceHeaders(otelContext.active(), trace);
          Object.assign(headers, trace);
        }
        try {
          const response = await transport.request({
            method: req.method,
            url: new URL(`${prefix}${req.path}`, base.origin),
            headers,
            ...(req.body !== undefined && { body: req.body }),
            ...(req.signal !== undefined && { signal: req.signal }),
          });
          span?.setAttribute('http.response.status_code', response.status);
          return response;
        } catch (error) {
          if (!(error instanceof HttpExchangeError)) throw error;
          throw new ShoalError(
            'SERVICE_UNAVAILABLE',
            `${req.method} ${url}${req.path}: ${error.code ?? error.message}`,
            { cause: error.cause },
          );
        }
      },
    );

  return {
    url,
    request,

    /** Sends a request and fails with the answer's error when it is not a success. */
    call: async (req: ServiceRequest): Promise<HttpResponse> => {
      const response = await request(req);
      if (response.status >= 200 && response.status < 300) return response;
      throw await problemOf(response, req, codeByStatus);
    },

    close: (): Promise<void> => transport.close(),
  };
};

export type ServiceClient = ReturnType<typeof createServiceClient>;

/** Reads a JSON answer (bounded). */
export const readJson = async <T>(body: Readable, what = 'the service'): Promise<T> => {
  const { bytes, truncated } = await readBody(body, maxJsonBytes);
  try {
    if (truncated) throw new Error('too large');
    return JSON.parse(bytes.toString('utf8')) as T;
  } catch {
    throw new ShoalError('INTERNAL', `expected JSON from ${what}`);
  }
};

/** The error a non-2xx answer stands for: its Problem Details code, or one by status. */
export const problemOf = async (
  response: HttpResponse,
  req: Pick<ServiceRequest, 'method' | 'path'>,
  codeByStatus: (status: number) => ErrorCode,
): Promise<ShoalError> => {
  let problem: { code?: string; detail?: string; extra?: Record<string, unknown> } = {};
  if (req.method !== 'HEAD') {
    try {
      const { bytes } = await readBody(response.body, maxProblemBytes);
      problem = (JSON.parse(bytes.toString('utf8')) ?? {}) as typeof problem;
    } catch {
      problem = {};
    }
  } else {
    discard(response.body);
  }
  const code: ErrorCode =
    problem.code !== undefined && problem.code in errorCodes
      ? (problem.code as ErrorCode)
      : codeByStatus(response.status);
  return new ShoalError(
    code,
    problem.detail ?? `${req.method} ${req.path}: HTTP ${response.status}`,
    { ...(problem.extra !== undefined && { detail: problem.extra }) },
  );
};

/**
 * A JSON client of a Shoal service's API, for small requests and answers: `call(method,
 * path, {body, headers})` sends JSON and resolves with the parsed answer; errors as
 * {@link createServiceClient}'s.
 */
export const createJsonClient = (
  baseUrl: string,
  options: { timeoutMs?: number; identity?: ClientIdentity } = {},
) => {
  const client = createServiceClient(baseUrl, {
    timeoutMs: options.timeoutMs ?? 30_000,
    ...(options.identity !== undefined && { identity: options.identity }),
  });
  return async <T>(
    method: string,
    path: string,
    init: { body?: unknown; headers?: Record<string, string> } = {},
  ): Promise<{ body: T; status: number }> => {
    const response = await client
      .call({
        method,
        path,
        headers: {
          accept: 'application/json',
          ...(init.body !== undefined && { 'content-type': 'application/json' }),
          ...init.headers,
        },
        ...(init.body !== undefined && { body: Buffer.from(JSON.stringify(init.body)) }),
      })
      .catch((error: unknown) => {
        // Not reached at all (an answer's own SERVICE_UNAVAILABLE has no cause).
        if (!isShoalError(error, 'SERVICE_UNAVAILABLE') || error.cause === undefined) throw error;
        throw new ShoalError(
          'SERVICE_UNAVAILABLE',
          `cannot reach ${client.url}: ${describeHttpError(error.cause)}`,
          { cause: error.cause },
        );
      });
    const { bytes } = await readBody(response.body, maxJsonBytes);
    let body: unknown;
    try {
      body = bytes.length > 0 ? JSON.parse(bytes.toString('utf8')) : undefined;
    } catch {
      body = undefined;
    }
    return { body: body as T, status: response.status };
  };
};

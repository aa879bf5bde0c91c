import { Readable } from 'node:stream';
import { setTimeout as sleep } from 'node:timers/promises';
import { Agent, buildConnector } from 'undici';

/** Response headers, lower-case names. */
export type ResponseHeaders = Readonly<Record<string, string | string[] | undefined>>;

export type HttpTransportOptions = {
  /**
   * Longest pause of the other side: while the request is sent (the server not reading),
   * while its answer is awaited, and between bytes of the response body. A reader that is
   * slow to take the body does not count.
   */
  readonly idleTimeoutMs: number;
  /** Longest wait for a connection to open (default: the idle timeout, at most 10 s). */
  readonly connectTimeoutMs?: number;
  /** Longest wait for the response head once the request is sent (default: the idle timeout). */
  readonly headersTimeoutMs?: number;
  /**
   * Attempts of a request that fails before its first response byte (cannot connect, the
   * connection breaks, no answer in time) or answers one of `retryStatuses`; default 1 (no
   * retries). A request whose body cannot be sent again (a stream) is never repeated.
   */
  readonly maxAttempts?: number;
  /** Answers worth another attempt (e.g. 503, 429); the last attempt's answer is returned. */
  readonly retryStatuses?: readonly number[];
  /** Waits between attempts: `initialMs`, doubling, at most `maxMs`; each less up to half (jitter). */
  readonly backoff?: { readonly initialMs: number; readonly maxMs: number };
  /** Connections kept per origin (default 32). */
  readonly connections?: number;
  /** Accept any TLS certificate (tests only). */
  readonly insecure?: boolean;
  /**
   * TLS of new connections, asked at each: the CA bundle servers are checked against
   * (instead of the system roots) and the client certificate to present. A getter, so
   * rotated files are used from the next connection on.
   */
  readonly tls?: () => ClientTlsMaterial;
  /** `User-Agent` of requests that name none. */
  readonly userAgent?: string;
};

/** PEM bytes: the CA bundle to trust, and a client certificate with its key. */
export type ClientTlsMaterial = {
  readonly ca?: Buffer | string;
  readonly cert?: Buffer | string;
  readonly key?: Buffer | string;
};

/** A request body: bytes in memory (sent again as they are on a retry), or a stream. */
export type RequestBody = Uint8Array | readonly Uint8Array[] | Readable | AsyncIterable<Uint8Array>;

export type HttpRequest = {
  readonly method: string;
  readonly url: URL;
  readonly headers?: Readonly<Record<string, string | number | undefined>>;
  /**
   * Bytes in memory go with their length. A stream is sent as it comes, with back-pressure:
   * with `content-length` when the headers name one, else chunked. A stream that fails
   * aborts the request, which then fails with the stream's error.
   */
  readonly body?: RequestBody;
  readonly signal?: AbortSignal;
  /** false: never repeat this request (default: repeated as the options say, if it can be). */
  readonly retry?: boolean;
};

export type HttpResponse = {
  readonly status: number;
  readonly headers: ResponseHeaders;
  /**
   * The body as it streams in, with back-pressure to the server. Read it, `discard` it or
   * destroy it (which drops the connection).
   */
  readonly body: Readable;
};

/**
 * One streaming HTTP/1.1 client on undici (keep-alive connections per origin), with what every
 * client of another server needs: connect, head and idle timeouts, retries with exponential
 * backoff and jitter only before the first response byte, and bodies streamed both ways with
 * back-pressure. It does not follow redirects and maps no status to an error: callers
 * decide what an answer means. A failed exchange is an {@link HttpExchangeError}; a request
 * body stream's own error, or an abort's reason, is thrown as it is.
 */
export type HttpTransport = {
  request(request: HttpRequest): Promise<HttpResponse>;
  /** Ends every connection, in flight or idle. */
  close(): Promise<void>;
};

/** The exchange failed: no connection, a broken one, or no answer in time. */
export class HttpExchangeError extends Error {
  /** The underlying code: ECONNREFUSED, ECONNRESET, UND_ERR_HEADERS_TIMEOUT, … */
  readonly code: string | undefined;
  constructor(override readonly cause: unknown) {
    super(describeHttpError(cause));
    this.name = 'HttpExchangeError';
    const code = (cause as { code?: unknown } | null)?.code;
    this.code = typeof code === 'string' ? code : undefined;
  }
}

/** Answers of a server that may be over soon (429 and 5xx): worth another attempt. */
export const unavailableStatuses: readonly number[] = [
  429,
  ...Array.from({ length: 100 }, (_, i) => 500 + i),
];

const defaultBackoff = { initialMs: 100, maxMs: 2000 };

export const createHttpTransport = (options: HttpTransportOptions): HttpTransport => {
  const idle = options.idleTimeoutMs;
  const maxAttempts = Math.max(1, options.maxAttempts ?? 1);
  const retryStatuses = new Set(options.retryStatuses ?? []);
  const backoff = options.backoff ?? defaultBackoff;
  const agent = new Agent({
    connections: options.connections ?? 32,
    headersTimeout: options.headersTimeoutMs ?? idle,
    bodyTimeout: idle,
    connect: connectorOf(options),
  });

  const headersOf = (request: HttpRequest): Record<string, string> => {
    const out: Record<string, string> = {};
    for (const [name, value] of Object.entries(request.headers ?? {})) {
      if (value !== undefined) out[name.toLowerCase()] = String(value);
    }
    if (options.userAgent !== undefined) out['user-agent'] ??= options.userAgent;
    const body = request.body;
    if (body instanceof Uint8Array) out['content-length'] = String(body.length);
    else if (Array.isArray(body)) out['content-length'] = String(byteLength(body));
    return out;
  };

  const once = async (request: HttpRequest, headers: Record<string, string>) => {
    const failure: { body?: unknown } = {};
    const body = request.body;
    const sent =
      body === undefined || body instanceof Uint8Array || Array.isArray(body)
        ? (body as Uint8Array | Uint8Array[] | undefined)
        : tracked(body as AsyncIterable<Uint8Array>, failure);
    try {
      const response = await agent.request({
        origin: request.url.origin,
        path: `${request.url.pathname}${request.url.search}`,
        method: request.method as 'GET',
        headers,
        // undici sends iterables too (its types say streams only): chunks without a copy.
        ...(sent !== undefined && { body: sent as unknown as Readable }),
        ...(request.signal !== undefined && { signal: request.signal }),
      });
      return {
        status: response.statusCode,
        headers: response.headers as ResponseHeaders,
        body: response.body as Readable,
      };
    } catch (error) {
      // The caller's stream failed, or the caller gave up: theirs is the error, not ours.
      if (failure.body !== undefined) throw failure.body;
      if (request.signal?.aborted) throw request.signal.reason ?? error;
      throw new HttpExchangeError(error);
    }
  };

  return {
    async request(request) {
      const headers = headersOf(request);
      const body = request.body;
      const repeatable =
        request.retry !== false &&
        (body === undefined || body instanceof Uint8Array || Array.isArray(body));
      const attempts = repeatable ? maxAttempts : 1;
      for (let attempt = 1; ; attempt++) {
        const last = attempt >= attempts;
        let response: HttpResponse;
        try {
          response = await once(request, headers);
        } catch (error) {
          if (last || !(error instanceof HttpExchangeError) || !isConnectionFailure(error.cause)) {
            throw error;
          }
          await pause(attempt, backoff, request.signal);
          continue;
        }
        if (last || !retryStatuses.has(response.status)) return response;
        discard(response.body);
        await pause(attempt, backoff, request.signal);
      }
    },
    close: () => agent.destroy(),
  };
};

/**
 * How connections are opened: with the TLS material current when each is opened (a connector
 * is built again only when the material changed).
 */
const connectorOf = (options: HttpTransportOptions) => {
  const base = {
    timeout: options.connectTimeoutMs ?? Math.min(options.idleTimeoutMs, 10_000),
    ...(options.insecure === true && { rejectUnauthorized: false }),
  };
  const tls = options.tls;
  if (tls === undefined) return base;
  let built: { material: ClientTlsMaterial; connect: buildConnector.connector } | undefined;
  const connect: buildConnector.connector = (connectOptions, callback) => {
    const material = tls();
    if (built?.material !== material) {
      built = { material, connect: buildConnector({ ...base, ...material }) };
    }
    built.connect(connectOptions, callback);
  };
  return connect;
};

/** The wait before attempt `attempt + 1`: exponential, capped, less up to half (jitter). */
const pause = async (
  attempt: number,
  backoff: { initialMs: number; maxMs: number },
  signal: AbortSignal | undefined,
) => {
  const delay = Math.min(backoff.maxMs, backoff.initialMs * 2 ** (attempt - 1));
  await sleep(delay / 2 + Math.random() * (delay / 2), undefined, signal ? { signal } : {});
};

/** Failures of the exchange itself (not of the caller's body): worth another attempt. */
const isConnectionFailure = (error: unknown): boolean => {
  const code = (error as { code?: unknown } | null)?.code;
  return typeof code === 'string' && (code.startsWith('UND_ERR_') || /^E[A-Z]+$/.test(code))
    ? code !== 'UND_ERR_ABORTED' && code !== 'UND_ERR_INVALID_ARG'
    : false;
};

/** A request body stream whose failure is remembered, to be told apart from the exchange's. */
async function* tracked(
  source: AsyncIterable<Uint8Array | string>,
  failure: { body?: unknown },
): AsyncGenerator<Uint8Array> {
  try {
    for await (const chunk of source) yield typeof chunk === 'string' ? Buffer.from(chunk) : chunk;
  } catch (error) {
    failure.body = error ?? new Error('request body failed');
    throw error;
  }
}

const byteLength = (chunks: readonly Uint8Array[]) =>
  chunks.reduce((sum, bytes) => sum + bytes.length, 0);

/** The first value of a response header. */
export const headerOf = (headers: ResponseHeaders, name: string): string | undefined => {
  const value = headers[name.toLowerCase()];
  return Array.isArray(value) ? value[0] : value;
};

/** `Content-Length` as a number, when there is a valid one. */
export const contentLengthOf = (headers: ResponseHeaders): number | undefined => {
  const value = headerOf(headers, 'content-length');
  return value !== undefined && /^\d+$/.test(value) ? Number(value) : undefined;
};

/** Lets a body nobody reads go by (its connection is kept); its failures are of no concern. */
export const discard = (body: Readable): void => {
  body.on('error', () => undefined);
  body.resume();
};

/** Drops a body nobody wants, and its connection (the abort it causes is of no concern). */
export const drop = (body: Readable): void => {
  body.on('error', () => undefined);
  body.destroy();
};

/**
 * Reads a body into memory, at most `cap` bytes: past them the rest is dropped (and the
 * connection with it) and `truncated` is set. Bounds what an error or JSON answer can cost.
 */
export const readBody = (
  body: Readable,
  cap: number,
): Promise<{ bytes: Buffer; truncated: boolean }> =>
  new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    const onData = (chunk: Buffer) => {
      const room = cap - size;
      size += chunk.length;
      if (size <= cap) {
        chunks.push(chunk);
        return;
      }
      chunks.push(chunk.subarray(0, room));
      body.off('data', onData);
      drop(body);
      resolve({ bytes: Buffer.concat(chunks), truncated: true });
    };
    body.on('data', onData);
    body.once('error', reject);
    body.once('end', () => resolve({ bytes: Buffer.concat(chunks), truncated: false }));
  });

/**
 * Bytes `[skip, skip + length)` of a response body, as a stream with back-pressure. Once
 * `length` bytes are through, the rest of the body is read off when `bodyLength` says it is
 * all there was (the connection is kept), else the connection is dropped. Destroying the
 * stream drops the connection. A body that ends short or breaks fails the stream with
 * `fail(why, cause)`.
 */
export const sliceBody = (
  body: Readable,
  options: {
    readonly skip: number;
    readonly length: number;
    /** The body's `Content-Length`, if known. */
    readonly bodyLength?: number | undefined;
    readonly fail: (why: string, cause?: unknown) => Error;
  },
): Readable => {
  let skip = options.skip;
  let remaining = options.length;
  const all = options.bodyLength === options.skip + options.length;
  body.on('error', () => undefined);
  const finish = () => {
    body.off('data', onData);
    if (all) body.resume();
    else body.destroy();
    out.push(null);
  };
  const onData = (chunk: Buffer) => {
    let bytes = chunk;
    if (skip > 0) {
      const dropped = Math.min(skip, bytes.length);
      skip -= dropped;
      bytes = bytes.subarray(dropped);
    }
    if (bytes.length >= remaining) {
      if (remaining > 0) out.push(bytes.subarray(0, remaining));
      remaining = 0;
      finish();
      return;
    }
    remaining -= bytes.length;
    if (bytes.length > 0 && !out.push(bytes)) body.pause();
  };
  const out = new Readable({
    read() {
      if (remaining > 0) body.resume();
    },
    destroy(error, callback) {
      body.off('data', onData);
      if (remaining > 0) body.destroy();
      callback(error);
    },
  });
  if (remaining === 0 && skip === 0) {
    // Nothing to read (an empty object): let the body finish on its own.
    body.resume();
    out.push(null);
    return out;
  }
  body.pause();
  body.on('data', onData);
  body.once('end', () => {
    if (remaining > 0) out.destroy(options.fail(`body ended ${remaining} bytes short`));
  });
  body.once('error', (error) => {
    if (remaining === 0) return;
    const code = (error as { code?: unknown }).code;
    const why =
      typeof code === 'string' && closedCodes.has(code)
        ? `connection closed mid-body (${code})`
        : `body: ${describeHttpError(error)}`;
    out.destroy(options.fail(why, error));
  });
  body.once('close', () => {
    if (remaining > 0 && !out.destroyed) out.destroy(options.fail('connection closed mid-body'));
  });
  return out;
};

/** Errors of a body whose connection ended before it did. */
const closedCodes = new Set([
  'UND_ERR_SOCKET',
  'UND_ERR_RES_CONTENT_LENGTH_MISMATCH',
  'ECONNRESET',
  'EPIPE',
]);

/** A message for a failed exchange: the error's code (ECONNREFUSED, UND_ERR_…) and text. */
export const describeHttpError = (error: unknown): string => {
  const code = (error as { code?: unknown } | null)?.code;
  const message = error instanceof Error ? error.message : String(error);
  const cause = (error as { cause?: { code?: unknown; message?: unknown } } | null)?.cause;
  const text = typeof code === 'string' && !message.includes(code) ? `${code} ${message}` : message;
  return typeof cause?.code === 'string' && !text.includes(cause.code)
    ? `${text} (${cause.code})`
    : text;
};

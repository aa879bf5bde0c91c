import type { IncomingMessage } from 'node:http';
import { Agent as HttpAgent, request as httpRequest } from 'node:http';
import { Agent as HttpsAgent, request as httpsRequest } from 'node:https';
import { Readable } from 'node:stream';
import type { ErrorCode } from '../../../domain';
import { ShoalError, errorCodes } from '../../../domain';

export type RequestBody = Readable | Buffer | undefined;

export type StreamingRequest = {
  readonly method: string;
  /** Path and query, starting with `/`. */
  readonly path: string;
  readonly headers?: Record<string, string | number | undefined>;
  /** A Buffer is sent with its length; a stream is piped (chunked unless a length is set). */
  readonly body?: RequestBody;
  readonly signal?: AbortSignal;
};

/** Largest error body read from a response. */
const maxProblemBytes = 64 * 1024;

/**
 * HTTP/1.1 with streaming bodies both ways over keep-alive connections: what the origin API
 * needs and `fetch` makes awkward (a request body stream with back-pressure, an early error
 * response that must stop the upload, a response body handed on as a Node stream).
 * Problem Details answers become `ShoalError`s with their codes; failures to connect or a
 * connection lost before the answer become `SERVICE_UNAVAILABLE` (retriable).
 */
export const createHttpTransport = (baseUrl: string, options: { timeoutMs?: number } = {}) => {
  const base = new URL(baseUrl.replace(/\/+$/, ''));
  const secure = base.protocol === 'https:';
  const agent = secure
    ? new HttpsAgent({ keepAlive: true, maxSockets: 64 })
    : new HttpAgent({ keepAlive: true, maxSockets: 64 });
  const send = secure ? httpsRequest : httpRequest;
  const prefix = base.pathname === '/' ? '' : base.pathname;
  const timeoutMs = options.timeoutMs ?? 60_000;
  const describe = `${base.origin}${prefix}`;

  /** Sends a request; resolves with the response once its headers arrive. */
  const request = (req: StreamingRequest): Promise<IncomingMessage> =>
    new Promise((resolve, reject) => {
      const headers: Record<string, string | number> = {};
      for (const [k, v] of Object.entries(req.headers ?? {})) if (v !== undefined) headers[k] = v;
      if (Buffer.isBuffer(req.body)) headers['content-length'] = req.body.length;
      const outgoing = send({
        protocol: base.protocol,
        hostname: base.hostname,
        port: base.port,
        path: `${prefix}${req.path}`,
        method: req.method,
        headers,
        agent,
        ...(req.signal !== undefined && { signal: req.signal }),
      });
      let settled = false;
      let bodyError: unknown;
      const fail = (error: unknown) => {
        if (settled) return;
        settled = true;
        if (bodyError !== undefined) reject(bodyError);
        else if (req.signal?.aborted) reject(req.signal.reason ?? error);
        else reject(unavailable(describe, req, error));
      };
      // An idle socket (no bytes either way) for this long is a dead peer.
      outgoing.setTimeout(timeoutMs, () =>
        outgoing.destroy(new Error(`no activity for ${timeoutMs} ms`)),
      );
      outgoing.on('error', fail);
      outgoing.on('response', (response) => {
        if (settled) {
          response.resume();
          return;
        }
        settled = true;
        // The server answered before taking the whole body (an error, usually): stop sending,
        // and drop the connection once the answer is read (it cannot carry another request).
        if (req.body instanceof Readable && !outgoing.writableFinished) {
          req.body.unpipe(outgoing);
          response.once('close', () => outgoing.destroy());
        }
        resolve(response);
      });
      const body = req.body;
      if (body === undefined) outgoing.end();
      else if (Buffer.isBuffer(body)) outgoing.end(body);
      else {
        body.once('error', (error) => {
          bodyError = error;
          outgoing.destroy(error);
        });
        body.pipe(outgoing);
      }
    });

  return {
    url: describe,
    request,

    /** Sends a request and fails with the answer's error when it is not a success. */
    call: async (req: StreamingRequest): Promise<IncomingMessage> => {
      const response = await request(req);
      const status = response.statusCode ?? 0;
      if (status >= 200 && status < 300) return response;
      throw await problemOf(response, req);
    },

    close: async (): Promise<void> => {
      agent.destroy();
    },
  };
};

export type HttpTransport = ReturnType<typeof createHttpTransport>;

/** Reads a JSON body (bounded). */
export const readJson = async <T>(response: IncomingMessage): Promise<T> => {
  const text = await readText(response, 16 * 1024 * 1024);
  try {
    return JSON.parse(text) as T;
  } catch {
    throw new ShoalError('INTERNAL', `expected JSON from ${response.url ?? 'origin'}`);
  }
};

const readText = async (response: IncomingMessage, limit: number): Promise<string> => {
  const chunks: Buffer[] = [];
  let total = 0;
  for await (const chunk of response) {
    total += (chunk as Buffer).length;
    if (total > limit) {
      response.destroy();
      break;
    }
    chunks.push(chunk as Buffer);
  }
  return Buffer.concat(chunks).toString('utf8');
};

/** The error a non-2xx answer stands for: its Problem Details code, or one by status. */
export const problemOf = async (
  response: IncomingMessage,
  req: Pick<StreamingRequest, 'method' | 'path'>,
): Promise<ShoalError> => {
  const status = response.statusCode ?? 0;
  let problem: { code?: string; detail?: string; extra?: Record<string, unknown> } = {};
  if (req.method !== 'HEAD') {
    try {
      problem = JSON.parse(await readText(response, maxProblemBytes)) as typeof problem;
    } catch {
      problem = {};
    }
  } else {
    response.resume();
  }
  const code: ErrorCode =
    problem.code !== undefined && problem.code in errorCodes
      ? (problem.code as ErrorCode)
      : codeByStatus(status);
  return new ShoalError(code, problem.detail ?? `${req.method} ${req.path}: HTTP ${status}`, {
    ...(problem.extra !== undefined && { detail: problem.extra }),
  });
};

const codeByStatus = (status: number): ErrorCode => {
  if (status === 404) return 'BLOB_UNKNOWN';
  if (status === 416) return 'RANGE_INVALID';
  if (status === 503 || status === 502 || status === 504) return 'SERVICE_UNAVAILABLE';
  if (status >= 400 && status < 500) return 'PARAMETER_INVALID';
  return 'INTERNAL';
};

const unavailable = (base: string, req: StreamingRequest, error: unknown) => {
  const cause = error as NodeJS.ErrnoException;
  return new ShoalError(
    'SERVICE_UNAVAILABLE',
    `${req.method} ${base}${req.path}: ${cause?.code ?? cause?.message ?? String(error)}`,
    { cause: error },
  );
};

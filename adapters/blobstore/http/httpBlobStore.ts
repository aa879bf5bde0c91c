import type { Agent, ClientRequest, IncomingMessage, OutgoingHttpHeaders } from 'node:http';
import { request as httpRequest } from 'node:http';
import { request as httpsRequest } from 'node:https';
import { Readable } from 'node:stream';
import type { Static } from '@sinclair/typebox';
import { Type } from '@sinclair/typebox';
import type { BlobStore, ByteRange, ByteSource, ObjectRead, ObjectStat } from '../../../domain';
import {
  ShoalError,
  digestAlgorithm,
  digestHex,
  digestOfObjectName,
  isShoalError,
  orThrow,
  parseObjectName,
  parseObjectPrefix,
  resolveRange,
} from '../../../domain';

const defaults = { timeoutMs: 30_000, maxAttempts: 3 } as const;

/** The `http` backend (`backend.http` in a service's YAML). */
export const HttpBackendConfigSchema = Type.Object(
  {
    urlTemplate: Type.String({
      default: '',
      description:
        'URL of one object, e.g. http://host/blobs/{name}; placeholders: {name} (the object ' +
        'name), and for blob objects {digest} (sha256:…), {algorithm}, {hex}. Must be set',
    }),
    write: Type.Boolean({
      default: false,
      description:
        'false: read-only (put and delete answer UNSUPPORTED); true: PUT and DELETE, and the ' +
        'server must make a PUT atomic and durable (nginx dav_methods writes a temporary ' +
        'file and renames it)',
    }),
    headers: Type.Record(Type.String(), Type.String(), {
      default: {},
      description: 'extra request headers, e.g. Authorization',
    }),
    timeoutMs: Type.Integer({
      default: defaults.timeoutMs,
      minimum: 1,
      description: 'idle timeout: longest wait for a response or the next bytes of one',
    }),
    maxAttempts: Type.Integer({
      default: defaults.maxAttempts,
      minimum: 1,
      description:
        'attempts of a GET or HEAD failing to connect or answering 5xx/429, with backoff; ' +
        'never retried once bytes were handed out, writes never retried',
    }),
    listUrl: Type.String({
      default: '',
      description:
        'base URL of a JSON directory index (nginx autoindex_format json) where object ' +
        '<name> is <listUrl><name>; empty: list() answers UNSUPPORTED',
    }),
  },
  { default: {} },
);

export type HttpBackendConfig = Static<typeof HttpBackendConfigSchema>;

export type HttpBlobStoreOptions = Partial<HttpBackendConfig> & {
  readonly urlTemplate: string;
  /** The backend's name in `BlobPersisted` (default `http`). */
  readonly name?: string;
  /** HTTP agent for every request (default Node's global agents). */
  readonly agent?: Agent;
};

/**
 * A BlobStore on a plain web server: object `n` is the URL the template makes of it. Reads
 * are HEAD (stat) and GET with `Range` (retried on connection errors and 5xx before any byte
 * is handed out); with `write`, PUT streams the body (`Content-Length` when the size is
 * known) and DELETE removes. Atomic puts are the server's job: nginx's WebDAV module writes
 * the body to a temporary file and renames it into place, and drops it when the body breaks
 * off, which is what this adapter does on any failure (it never sends the last bytes of a body
 * that fails the size check). Listing walks a JSON directory index when `listUrl` is set.
 */
export const createHttpBlobStore = (options: HttpBlobStoreOptions): BlobStore => {
  const template = options.urlTemplate;
  const write = options.write ?? false;
  const timeoutMs = options.timeoutMs ?? defaults.timeoutMs;
  const maxAttempts = options.maxAttempts ?? defaults.maxAttempts;
  const extraHeaders = options.headers ?? {};
  const listBase = options.listUrl ? withSlash(options.listUrl) : '';
  const where = (url: URL) => `${url.origin}${url.pathname}`;
  const transport: Transport = { timeoutMs, agent: options.agent };

  if (!/\{(name|digest|hex)\}/.test(template)) {
    throw new ShoalError(
      'CONFIG_INVALID',
      `http backend: urlTemplate "${template}" has no {name}, {digest} or {hex} placeholder`,
    );
  }
  checkUrl(template.replace(/\{(name|digest|algorithm|hex)\}/g, 'x'), 'urlTemplate');
  if (listBase) checkUrl(listBase, 'listUrl');

  const urlOf = (name: string): URL => {
    orThrow(parseObjectName(name));
    const digest = () => {
      const found = digestOfBlobName(name);
      if (found === undefined) {
        throw new ShoalError(
          'PARAMETER_INVALID',
          `object ${name} is not a blob object name, which the http urlTemplate needs`,
          { detail: { name } },
        );
      }
      return found;
    };
    return new URL(
      template.replace(/\{(name|digest|algorithm|hex)\}/g, (_, key: string) =>
        key === 'name'
          ? name
          : key === 'digest'
            ? digest()
            : key === 'algorithm'
              ? digestAlgorithm(digest())
              : digestHex(digest()),
      ),
    );
  };

  const unavailable = (url: URL, what: string, cause?: unknown) =>
    new ShoalError('STORAGE_UNAVAILABLE', `http store ${where(url)}: ${what}`, {
      cause,
      detail: { url: where(url) },
    });

  /** A GET or HEAD, retried while it fails to connect or the server answers 5xx/429. */
  const fetchHead = (url: URL, method: 'GET' | 'HEAD', headers: OutgoingHttpHeaders = {}) =>
    withRetries(maxAttempts, async (last) => {
      let exchange: Exchange;
      try {
        exchange = await send(transport, url, method, { ...extraHeaders, ...headers });
      } catch (error) {
        throw new Retriable(unavailable(url, `${method}: ${describeError(error)}`, error));
      }
      const status = exchange.res.statusCode ?? 0;
      if (status >= 500 || status === 429) {
        exchange.req.destroy();
        const error = unavailable(url, `${method} answered ${status}`);
        throw last ? error : new Retriable(error);
      }
      return exchange;
    });

  const unsupported = (what: string) => new ShoalError('UNSUPPORTED', `http store: ${what}`);

  return {
    name: options.name ?? 'http',
    readOnly: !write,

    stat: async (name): Promise<ObjectStat | undefined> => {
      const url = urlOf(name);
      const { req, res } = await fetchHead(url, 'HEAD');
      res.resume();
      const status = res.statusCode ?? 0;
      if (isMissing(res, url)) return undefined;
      if (status !== 200) {
        req.destroy();
        throw unavailable(url, `HEAD answered ${status}`);
      }
      const size = contentLength(res);
      if (size === undefined) throw unavailable(url, 'HEAD answered no Content-Length');
      return { size };
    },

    get: async (name, range?: ByteRange): Promise<ObjectRead> => {
      const url = urlOf(name);
      // A range that fits no object at all fails before any I/O.
      if (range !== undefined) orThrow(resolveRange(Number.MAX_SAFE_INTEGER, range));
      const headers = range ? { range: `bytes=${range.start}-${range.end ?? ''}` } : {};
      const { req, res } = await fetchHead(url, 'GET', headers);
      const status = res.statusCode ?? 0;
      const give = (size: number, first: number, wanted: { start: number; end: number }) => ({
        stream: responseBody(req, res, {
          skip: wanted.start - first,
          length: wanted.end - wanted.start + 1,
          timeoutMs,
          fail: (why, cause) => unavailable(url, `GET ${why}`, cause),
        }),
        size,
        start: wanted.start,
        end: wanted.end,
      });
      try {
        if (isMissing(res, url)) throw unknown(name);
        if (status === 416) {
          const size = /^bytes \*\/(\d+)$/.exec(header(res, 'content-range') ?? '')?.[1];
          if (size !== undefined) orThrow(resolveRange(Number(size), range));
          throw new ShoalError(
            'RANGE_INVALID',
            `range ${headers.range} of ${name} is unsatisfiable`,
          );
        }
        if (status === 206 && range !== undefined) {
          const served = parseContentRange(header(res, 'content-range'));
          if (served === undefined)
            throw unavailable(url, 'GET answered 206 without a Content-Range');
          const wanted = orThrow(resolveRange(served.size, range));
          if (served.start !== wanted.start || served.end < wanted.end) {
            throw unavailable(
              url,
              `GET answered bytes ${served.start}-${served.end}, not the range asked`,
            );
          }
          return give(served.size, served.start, wanted);
        }
        if (status === 200) {
          // The whole object (a server without ranges, or one that answers an empty file so).
          const size = contentLength(res);
          if (size === undefined) throw unavailable(url, 'GET answered no Content-Length');
          return give(size, 0, orThrow(resolveRange(size, range)));
        }
        throw unavailable(url, `GET answered ${status}`);
      } catch (error) {
        req.destroy();
        throw error;
      }
    },

    put: async (name, body: ByteSource, putOptions = {}) => {
      const url = urlOf(name);
      if (!write) throw unsupported(`read-only: cannot put ${name}`);
      return putStream(transport, url, body, {
        headers: extraHeaders,
        size: putOptions.size,
        sizeMismatch: () => sizeMismatch(name, putOptions.size ?? 0),
        fail: (what, cause) => unavailable(url, what, cause),
      });
    },

    delete: async (name) => {
      const url = urlOf(name);
      if (!write) throw unsupported(`read-only: cannot delete ${name}`);
      let exchange: Exchange;
      try {
        exchange = await send(transport, url, 'DELETE', extraHeaders);
      } catch (error) {
        throw unavailable(url, `DELETE: ${describeError(error)}`, error);
      }
      const { res } = exchange;
      res.resume();
      const status = res.statusCode ?? 0;
      if (status === 200 || status === 202 || status === 204) return true;
      // 409: the name is a directory (nginx), which holds no object of that name.
      if (status === 404 || status === 410 || status === 409) return false;
      throw unavailable(url, `DELETE answered ${status}`);
    },

    list: (prefix = '') => {
      if (!listBase) {
        // Fails on iteration, as a listing that reaches the server would.
        const refused = () => new ShoalError('UNSUPPORTED', 'http store: listing needs listUrl');
        return { [Symbol.asyncIterator]: () => ({ next: () => Promise.reject(refused()) }) };
      }
      return listIndex(listBase, prefix, async (url) => {
        const { req, res } = await fetchHead(url, 'GET', { accept: 'application/json' });
        if (res.statusCode === 404) {
          req.destroy();
          return undefined;
        }
        if (res.statusCode !== 200) {
          req.destroy();
          throw unavailable(url, `GET answered ${res.statusCode}`);
        }
        const text = await readText(res, 64 * 1024 * 1024).catch((error: unknown) => {
          throw unavailable(url, `GET: ${describeError(error)}`, error);
        });
        try {
          return JSON.parse(text) as IndexEntry[];
        } catch (error) {
          throw unavailable(url, 'GET answered no JSON directory index', error);
        }
      });
    },

    check: async () => {
      const url = new URL(listBase || template.slice(0, template.indexOf('{')));
      const { res } = await fetchHead(url, 'HEAD');
      res.resume();
    },
  };
};

// ---- transport -------------------------------------------------------------------------

/** How requests are made: the idle timeout and the agent. */
export type Transport = { readonly timeoutMs: number; readonly agent?: Agent | undefined };

/** One HTTP exchange: the request sent and the head of its response. */
export type Exchange = { readonly req: ClientRequest; readonly res: IncomingMessage };

/** Marks an error worth another attempt. */
export class Retriable extends Error {
  constructor(readonly error: Error) {
    super(error.message);
  }
}

/**
 * Runs `attempt` up to `maxAttempts` times while it throws {@link Retriable}, waiting
 * 100 ms, 200 ms, … (capped at 2 s, with jitter) in between; throws the last error unwrapped.
 */
export const withRetries = async <T>(
  maxAttempts: number,
  attempt: (last: boolean) => Promise<T>,
): Promise<T> => {
  for (let n = 1; ; n++) {
    try {
      return await attempt(n >= maxAttempts);
    } catch (error) {
      if (!(error instanceof Retriable)) throw error;
      if (n >= maxAttempts) throw error.error;
      const delay = Math.min(2000, 100 * 2 ** (n - 1));
      await new Promise((resolve) => setTimeout(resolve, delay / 2 + Math.random() * (delay / 2)));
    }
  }
};

/**
 * Sends a request, with a body already in memory or none, and waits for the response head;
 * the idle timeout covers sending the body and waiting.
 */
export const send = (
  transport: Transport,
  url: URL,
  method: string,
  headers: OutgoingHttpHeaders,
  body?: readonly Uint8Array[],
): Promise<Exchange> => {
  const length = body && byteLength(body);
  const req = (url.protocol === 'https:' ? httpsRequest : httpRequest)(url, {
    method,
    headers: length === undefined ? headers : { ...headers, 'content-length': length },
    agent: transport.agent,
  });
  // No closure below refers to `body`: the listeners live as long as the request.
  const head = new Promise<Exchange>((resolve, reject) => {
    req.setTimeout(transport.timeoutMs, () =>
      req.destroy(new Error(`no response within ${transport.timeoutMs} ms`)),
    );
    // Errors after the head arrived reach the reader through the response body.
    req.on('error', reject);
    req.once('response', (res) => {
      req.setTimeout(0);
      resolve({ req, res });
    });
  });
  writeAll(req, body);
  return head;
};

/**
 * Queues a body and ends the request. The writes reference the caller's buffers (no copy),
 * and no closure that lives as long as the request does holds them.
 */
const writeAll = (req: ClientRequest, body: readonly Uint8Array[] | undefined) => {
  for (const bytes of body ?? []) req.write(bytes);
  req.end();
};

/**
 * The bytes `[skip, skip + length)` of a response body as a stream with back-pressure. The
 * idle timer runs only while the stream waits for the server (not while its reader is slow);
 * destroying the stream, or taking all `length` bytes of a longer body, aborts the request.
 * A body that ends short fails the stream with `fail(...)`.
 */
export const responseBody = (
  req: ClientRequest,
  res: IncomingMessage,
  options: {
    readonly skip: number;
    readonly length: number;
    readonly timeoutMs: number;
    readonly fail: (why: string, cause?: unknown) => Error;
  },
): Readable => {
  let skip = options.skip;
  let remaining = options.length;
  let timer: NodeJS.Timeout | undefined;
  const disarm = () => {
    if (timer !== undefined) clearTimeout(timer);
    timer = undefined;
  };
  const arm = () => {
    disarm();
    // A reader may destroy the stream from inside a `data` handler, i.e. during `push`.
    if (out.destroyed) return;
    timer = setTimeout(
      () => out.destroy(options.fail(`no data for ${options.timeoutMs} ms`)),
      options.timeoutMs,
    );
  };
  // Taking all of the body lets the connection be reused; the rest of a longer one (a range
  // cut from a whole-object answer) is not wanted.
  const all = contentLength(res) === options.skip + options.length;
  const done = () => {
    disarm();
    res.removeListener('data', onData);
    if (all) res.resume();
    else req.destroy();
    out.push(null);
  };
  const onData = (chunk: Buffer) => {
    disarm();
    let bytes = chunk;
    if (skip > 0) {
      const dropped = Math.min(skip, bytes.length);
      skip -= dropped;
      bytes = bytes.subarray(dropped);
    }
    if (bytes.length >= remaining) {
      if (remaining > 0) out.push(bytes.subarray(0, remaining));
      remaining = 0;
      done();
      return;
    }
    remaining -= bytes.length;
    if (bytes.length > 0 && !out.push(bytes)) res.pause();
    else arm();
  };
  const out = new Readable({
    read() {
      if (remaining === 0 && skip === 0) return;
      arm();
      res.resume();
    },
    destroy(error, callback) {
      disarm();
      res.removeListener('data', onData);
      if (remaining > 0) req.destroy();
      callback(error);
    },
  });
  if (remaining === 0 && skip === 0) {
    // Nothing to read (an empty object): let the response finish on its own.
    res.resume();
    out.push(null);
    return out;
  }
  res.pause();
  res.on('data', onData);
  res.once('end', () => {
    if (remaining > 0) out.destroy(options.fail(`body ended ${remaining} bytes short`));
  });
  res.once('error', (error) => {
    if (remaining > 0) out.destroy(options.fail(`body: ${describeError(error)}`, error));
  });
  res.once('close', () => {
    if (remaining > 0 && !out.destroyed) out.destroy(options.fail('connection closed mid-body'));
  });
  return out;
};

/**
 * PUTs a body as it streams, `Content-Length` when `size` is known, chunked otherwise. On any
 * failure (of the body, of the size check, of the server) the request is aborted so the server
 * drops the partial body: the last chunk is held back until the body has ended and its size
 * is right, so a server never receives a complete body that is not the one announced.
 */
export const putStream = async (
  transport: Transport,
  url: URL,
  body: ByteSource,
  options: {
    readonly headers: OutgoingHttpHeaders;
    readonly size: number | undefined;
    readonly method?: string;
    readonly sizeMismatch: () => Error;
    readonly fail: (what: string, cause?: unknown) => Error;
  },
): Promise<ObjectStat> => {
  const expected = options.size;
  const method = options.method ?? 'PUT';
  const req = (url.protocol === 'https:' ? httpsRequest : httpRequest)(url, {
    method,
    agent: transport.agent,
    headers: {
      'content-type': 'application/octet-stream',
      ...options.headers,
      ...(expected !== undefined && { 'content-length': expected }),
    },
  });
  let failure: Error | undefined;
  let answered: IncomingMessage | undefined;
  const response = new Promise<IncomingMessage>((resolve, reject) => {
    req.once('response', (res) => {
      answered = res;
      resolve(res);
    });
    req.on('error', (error) => {
      failure ??= options.fail(`${method}: ${describeError(error)}`, error);
      reject(failure);
    });
  });
  response.catch(() => undefined);

  /** Waits for `event` (or the response, or a failure) with the idle timer running. */
  const waitForServer = async (event: 'drain' | undefined) => {
    let timer: NodeJS.Timeout | undefined;
    try {
      await Promise.race([
        response,
        event === undefined ? response : new Promise((resolve) => req.once(event, resolve)),
        new Promise((_, reject) => {
          timer = setTimeout(
            () => reject(options.fail(`${method}: no progress for ${transport.timeoutMs} ms`)),
            transport.timeoutMs,
          );
        }),
      ]);
    } finally {
      clearTimeout(timer);
    }
  };
  const send = async (bytes: Uint8Array) => {
    if (failure) throw failure;
    if (answered)
      throw options.fail(`${method} answered ${answered.statusCode} before the body ended`);
    if (!req.write(bytes)) await waitForServer('drain');
  };

  let written = 0;
  let held: Uint8Array | undefined;
  let res: IncomingMessage;
  try {
    for await (const chunk of body as AsyncIterable<Uint8Array | string>) {
      const bytes = typeof chunk === 'string' ? Buffer.from(chunk) : chunk;
      if (bytes.length === 0) continue;
      written += bytes.length;
      if (expected !== undefined && written > expected) throw options.sizeMismatch();
      if (held) await send(held);
      held = bytes;
    }
    if (expected !== undefined && written !== expected) throw options.sizeMismatch();
    if (held) await send(held);
    req.end();
    await waitForServer(undefined);
    res = await response;
  } catch (error) {
    req.destroy();
    throw error;
  }
  res.resume();
  const status = res.statusCode ?? 0;
  if (status < 200 || status > 299) throw options.fail(`${method} answered ${status}`);
  return { size: written };
};

// ---- listing ---------------------------------------------------------------------------

/** An entry of a JSON directory index as nginx writes it (`autoindex_format json`). */
type IndexEntry = { readonly name?: unknown; readonly type?: unknown };

async function* listIndex(
  base: string,
  prefix: string,
  fetchIndex: (url: URL) => Promise<IndexEntry[] | undefined>,
): AsyncGenerator<string> {
  // Start at the deepest directory the prefix names completely; filter the rest by string.
  const slash = prefix.lastIndexOf('/');
  const dir = slash === -1 ? '' : orThrow(parseObjectPrefix(prefix.slice(0, slash)));
  yield* walkIndex(base, dir, prefix, fetchIndex);
}

async function* walkIndex(
  base: string,
  dir: string,
  prefix: string,
  fetchIndex: (url: URL) => Promise<IndexEntry[] | undefined>,
): AsyncGenerator<string> {
  const entries = await fetchIndex(new URL(`${base}${dir}`));
  if (entries === undefined || !Array.isArray(entries)) return;
  // Directories sort as `name/`, so the walk yields whole names in code-point order.
  const keyed = entries
    .filter(
      (e): e is { name: string; type: string } =>
        typeof e.name === 'string' &&
        (e.type === 'file' || e.type === 'directory') &&
        parseObjectName(e.name).ok &&
        !e.name.includes('/'),
    )
    .map((e) => ({ name: `${dir}${e.name}`, dir: e.type === 'directory' }))
    .map((e) => ({ ...e, key: e.dir ? `${e.name}/` : e.name }))
    .sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0));
  for (const entry of keyed) {
    if (entry.dir) {
      if (entry.key.startsWith(prefix) || prefix.startsWith(entry.key)) {
        yield* walkIndex(base, entry.key, prefix, fetchIndex);
      }
    } else if (entry.name.startsWith(prefix)) {
      yield entry.name;
    }
  }
}

// ---- helpers ---------------------------------------------------------------------------

/** The digest a blob object name stands for, whatever prefix precedes `blobs/`. */
const digestOfBlobName = (name: string) => {
  const parts = name.split('/');
  if (parts.length < 4) return undefined;
  const prefix = parts.slice(0, -4).join('/');
  return digestOfObjectName(name, prefix === '' ? '' : `${prefix}/`);
};

const byteLength = (body: readonly Uint8Array[]) =>
  body.reduce((sum, bytes) => sum + bytes.length, 0);

const withSlash = (url: string) => (url.endsWith('/') ? url : `${url}/`);

const checkUrl = (url: string, field: string) => {
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    throw new ShoalError('CONFIG_INVALID', `http backend: ${field} "${url}" is not a URL`);
  }
  if (parsed.protocol !== 'http:' && parsed.protocol !== 'https:') {
    throw new ShoalError('CONFIG_INVALID', `http backend: ${field} "${url}" is not http(s)`);
  }
};

const header = (res: IncomingMessage, name: string): string | undefined => {
  const value = res.headers[name];
  return Array.isArray(value) ? value[0] : value;
};

const contentLength = (res: IncomingMessage): number | undefined => {
  const value = header(res, 'content-length');
  return value !== undefined && /^\d+$/.test(value) ? Number(value) : undefined;
};

const parseContentRange = (value: string | undefined) => {
  const match = /^bytes (\d+)-(\d+)\/(\d+)$/.exec(value ?? '');
  if (!match) return undefined;
  return { start: Number(match[1]), end: Number(match[2]), size: Number(match[3]) };
};

/** Not there: 404/410, or a redirect to the same path as a directory (nginx's answer). */
const isMissing = (res: IncomingMessage, url: URL) => {
  const status = res.statusCode ?? 0;
  if (status === 404 || status === 410) return true;
  if (status !== 301 && status !== 302) return false;
  const location = header(res, 'location');
  return location !== undefined && new URL(location, url).pathname === `${url.pathname}/`;
};

const readText = async (res: IncomingMessage, limit: number): Promise<string> => {
  const chunks: Buffer[] = [];
  let total = 0;
  for await (const chunk of res as AsyncIterable<Buffer>) {
    total += chunk.length;
    if (total > limit) throw new Error(`body larger than ${limit} bytes`);
    chunks.push(chunk);
  }
  return Buffer.concat(chunks).toString('utf8');
};

export const describeError = (error: unknown): string => {
  if (isShoalError(error)) return error.message;
  const code = (error as NodeJS.ErrnoException | null)?.code;
  const message = error instanceof Error ? error.message : String(error);
  return code && !message.includes(code) ? `${code} ${message}` : message;
};

const unknown = (name: string) =>
  new ShoalError('BLOB_UNKNOWN', `object ${name} does not exist`, { detail: { name } });

const sizeMismatch = (name: string, expected: number) =>
  new ShoalError('SIZE_INVALID', `object ${name}: body is not the announced ${expected} bytes`, {
    detail: { name, size: expected },
  });

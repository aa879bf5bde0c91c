import type { Static } from '@sinclair/typebox';
import { Type } from '@sinclair/typebox';
import type { BlobStore, ByteRange, ByteSource, ObjectRead, ObjectStat } from '../../../domain';
import {
  ShoalError,
  digestAlgorithm,
  digestHex,
  digestOfObjectName,
  orThrow,
  parseObjectName,
  resolveRange,
} from '../../../domain';
import type { HttpResponse, ResponseHeaders } from '../../../kit/http/transport';
import {
  HttpExchangeError,
  contentLengthOf,
  createHttpTransport,
  describeHttpError,
  discard,
  drop,
  headerOf,
  readBody,
  sliceBody,
  unavailableStatuses,
} from '../../../kit/http/transport';
import { parseServedRange, unsatisfiedRangeSize } from '../../../kit/http/range';
import type { IndexEntry } from './directoryIndex';
import { listIndex } from './directoryIndex';

const defaults = { timeoutMs: 30_000, maxAttempts: 3 } as const;
/** Largest directory index read. */
const maxIndexBytes = 64 * 1024 * 1024;

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
  const transport = createHttpTransport({
    idleTimeoutMs: timeoutMs,
    maxAttempts,
    retryStatuses: unavailableStatuses,
  });

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
  const fetchHead = async (
    url: URL,
    method: 'GET' | 'HEAD',
    headers: Readonly<Record<string, string | undefined>> = {},
  ): Promise<HttpResponse> => {
    let response: HttpResponse;
    try {
      response = await transport.request({ method, url, headers: { ...extraHeaders, ...headers } });
    } catch (error) {
      const cause = error instanceof HttpExchangeError ? error.cause : error;
      throw unavailable(url, `${method}: ${describeHttpError(cause)}`, cause);
    }
    if (response.status >= 500 || response.status === 429) {
      drop(response.body);
      throw unavailable(url, `${method} answered ${response.status}`);
    }
    return response;
  };

  const unsupported = (what: string) => new ShoalError('UNSUPPORTED', `http store: ${what}`);

  return {
    name: options.name ?? 'http',
    readOnly: !write,

    stat: async (name): Promise<ObjectStat | undefined> => {
      const url = urlOf(name);
      const res = await fetchHead(url, 'HEAD');
      discard(res.body);
      const status = res.status;
      if (isMissing(res, url)) return undefined;
      if (status !== 200) throw unavailable(url, `HEAD answered ${status}`);
      const size = contentLengthOf(res.headers);
      if (size === undefined) throw unavailable(url, 'HEAD answered no Content-Length');
      return { size };
    },

    get: async (name, range?: ByteRange): Promise<ObjectRead> => {
      const url = urlOf(name);
      // A range that fits no object at all fails before any I/O.
      if (range !== undefined) orThrow(resolveRange(Number.MAX_SAFE_INTEGER, range));
      const headers = range ? { range: `bytes=${range.start}-${range.end ?? ''}` } : {};
      const res = await fetchHead(url, 'GET', headers);
      const status = res.status;
      const give = (size: number, first: number, wanted: { start: number; end: number }) => ({
        stream: sliceBody(res.body, {
          skip: wanted.start - first,
          length: wanted.end - wanted.start + 1,
          bodyLength: contentLengthOf(res.headers),
          fail: (why, cause) => unavailable(url, `GET ${why}`, cause),
        }),
        size,
        start: wanted.start,
        end: wanted.end,
      });
      try {
        if (isMissing(res, url)) throw unknown(name);
        if (status === 416) {
          const size = unsatisfiedRangeSize(headerOf(res.headers, 'content-range'));
          if (size !== undefined) orThrow(resolveRange(size, range));
          throw new ShoalError(
            'RANGE_INVALID',
            `range ${headers.range} of ${name} is unsatisfiable`,
          );
        }
        if (status === 206 && range !== undefined) {
          const served = parseServedRange(headerOf(res.headers, 'content-range'));
          if (served?.size === undefined)
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
          const size = contentLengthOf(res.headers);
          if (size === undefined) throw unavailable(url, 'GET answered no Content-Length');
          return give(size, 0, orThrow(resolveRange(size, range)));
        }
        throw unavailable(url, `GET answered ${status}`);
      } catch (error) {
        drop(res.body);
        throw error;
      }
    },

    put: async (name, body: ByteSource, putOptions = {}) => {
      const url = urlOf(name);
      if (!write) throw unsupported(`read-only: cannot put ${name}`);
      const expected = putOptions.size;
      let written = 0;
      let response: HttpResponse;
      try {
        response = await transport.request({
          method: 'PUT',
          url,
          headers: {
            'content-type': 'application/octet-stream',
            ...extraHeaders,
            ...(expected !== undefined && { 'content-length': expected }),
          },
          body: heldBack(
            body,
            (bytes) => {
              written += bytes;
              return expected !== undefined && written > expected;
            },
            () => expected !== undefined && written !== expected,
            () => sizeMismatch(name, expected ?? 0),
          ),
          retry: false,
        });
      } catch (error) {
        if (!(error instanceof HttpExchangeError)) throw error;
        throw unavailable(url, `PUT: ${describeHttpError(error.cause)}`, error.cause);
      }
      discard(response.body);
      if (response.status < 200 || response.status > 299) {
        throw unavailable(url, `PUT answered ${response.status}`);
      }
      return { size: written };
    },

    delete: async (name) => {
      const url = urlOf(name);
      if (!write) throw unsupported(`read-only: cannot delete ${name}`);
      let res: HttpResponse;
      try {
        res = await transport.request({
          method: 'DELETE',
          url,
          headers: extraHeaders,
          retry: false,
        });
      } catch (error) {
        const cause = error instanceof HttpExchangeError ? error.cause : error;
        throw unavailable(url, `DELETE: ${describeHttpError(cause)}`, cause);
      }
      discard(res.body);
      const status = res.status;
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
        const res = await fetchHead(url, 'GET', { accept: 'application/json' });
        if (res.status === 404) {
          drop(res.body);
          return undefined;
        }
        if (res.status !== 200) {
          drop(res.body);
          throw unavailable(url, `GET answered ${res.status}`);
        }
        const { bytes, truncated } = await readBody(res.body, maxIndexBytes).catch(
          (error: unknown) => {
            throw unavailable(url, `GET: ${describeHttpError(error)}`, error);
          },
        );
        if (truncated) throw unavailable(url, `GET: body larger than ${maxIndexBytes} bytes`);
        try {
          return JSON.parse(bytes.toString('utf8')) as IndexEntry[];
        } catch (error) {
          throw unavailable(url, 'GET answered no JSON directory index', error);
        }
      });
    },

    check: async () => {
      const url = new URL(listBase || template.slice(0, template.indexOf('{')));
      discard((await fetchHead(url, 'HEAD')).body);
    },
  };
};

// ---- helpers ---------------------------------------------------------------------------

/** The digest a blob object name stands for, whatever prefix precedes `blobs/`. */
const digestOfBlobName = (name: string) => {
  const parts = name.split('/');
  if (parts.length < 4) return undefined;
  const prefix = parts.slice(0, -4).join('/');
  return digestOfObjectName(name, prefix === '' ? '' : `${prefix}/`);
};

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

/** Not there: 404/410, or a redirect to the same path as a directory (nginx's answer). */
const isMissing = (res: { status: number; headers: ResponseHeaders }, url: URL) => {
  const status = res.status;
  if (status === 404 || status === 410) return true;
  if (status !== 301 && status !== 302) return false;
  const location = headerOf(res.headers, 'location');
  return location !== undefined && new URL(location, url).pathname === `${url.pathname}/`;
};

const unknown = (name: string) =>
  new ShoalError('BLOB_UNKNOWN', `object ${name} does not exist`, { detail: { name } });

const sizeMismatch = (name: string, expected: number) =>
  new ShoalError('SIZE_INVALID', `object ${name}: body is not the announced ${expected} bytes`, {
    detail: { name, size: expected },
  });

/**
 * A put's body as it is sent: the latest chunk is held back until the next one (or the end)
 * is seen, so a body that fails the size check — too long as it streams, too short or long
 * at its end — fails before its last bytes leave, and the server (which writes a temporary
 * file and renames it only once the whole body came) stores nothing.
 */
async function* heldBack(
  body: ByteSource,
  tooLong: (bytes: number) => boolean,
  wrongAtEnd: () => boolean,
  mismatch: () => Error,
): AsyncGenerator<Uint8Array> {
  let held: Uint8Array | undefined;
  for await (const chunk of body as AsyncIterable<Uint8Array | string>) {
    const bytes = typeof chunk === 'string' ? Buffer.from(chunk) : chunk;
    if (bytes.length === 0) continue;
    if (tooLong(bytes.length)) throw mismatch();
    if (held) yield held;
    held = bytes;
  }
  if (wrongAtEnd()) throw mismatch();
  if (held) yield held;
}

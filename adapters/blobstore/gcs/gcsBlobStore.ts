import { Readable } from 'node:stream';
import type { Static } from '@sinclair/typebox';
import { Type } from '@sinclair/typebox';
import type { File } from '@google-cloud/storage';
import { IdempotencyStrategy, Storage } from '@google-cloud/storage';
import type { BlobStore, ByteRange, ByteSource, ObjectRead, ObjectStat } from '../../../domain';
import {
  ShoalError,
  isShoalError,
  orThrow,
  parseObjectName,
  parseObjectPrefix,
  resolveRange,
} from '../../../domain';
import type { HttpResponse, HttpTransport } from '../../../kit/http/transport';
import {
  HttpExchangeError,
  contentLengthOf,
  createHttpTransport,
  describeHttpError,
  discard,
  drop,
  headerOf,
  sliceBody,
  unavailableStatuses,
} from '../../../kit/http/transport';

const MiB = 1024 * 1024;
const defaults = {
  resumableThresholdBytes: 8 * MiB,
  chunkSizeBytes: 8 * MiB,
  timeoutMs: 60_000,
  maxAttempts: 3,
} as const;

/** The `gcs` backend (`backend.gcs` in a service's YAML). */
export const GcsBackendConfigSchema = Type.Object(
  {
    bucket: Type.String({
      default: '',
      description: 'bucket holding the objects; must be set (it is not created)',
    }),
    endpoint: Type.String({
      default: '',
      description:
        "JSON API endpoint; empty: Google's. Set for emulators (e.g. http://127.0.0.1:4443), " +
        'which are then sent no credentials unless keyFilename is set too',
    }),
    projectId: Type.String({
      default: '',
      description: 'Google Cloud project; empty: the one of the credentials',
    }),
    keyFilename: Type.String({
      default: '',
      description:
        'service account key file; empty: the standard Google credentials (ADC: ' +
        'GOOGLE_APPLICATION_CREDENTIALS, the metadata server, gcloud)',
    }),
    resumableThresholdBytes: Type.Integer({
      default: defaults.resumableThresholdBytes,
      minimum: 0,
      description:
        'bodies up to this size are held in memory and sent in one request; larger bodies ' +
        'use a resumable upload',
    }),
    chunkSizeBytes: Type.Integer({
      default: defaults.chunkSizeBytes,
      minimum: 256 * 1024,
      multipleOf: 256 * 1024,
      description:
        'size of each request of a resumable upload (a multiple of 256 KiB): the memory a put ' +
        'holds, and what a failed request resends',
    }),
    timeoutMs: Type.Integer({
      default: defaults.timeoutMs,
      minimum: 1,
      description: 'timeout of one request; of a download: longest wait for its next bytes',
    }),
    maxAttempts: Type.Integer({
      default: defaults.maxAttempts,
      minimum: 1,
      description:
        'attempts of a request failing with a retriable error (5xx, 429, connection reset), ' +
        'with backoff; a download is never retried once bytes were handed out',
    }),
  },
  { default: {} },
);

export type GcsBackendConfig = Static<typeof GcsBackendConfigSchema>;

export type GcsBlobStoreOptions = Partial<GcsBackendConfig> & {
  readonly bucket: string;
  /** The backend's name in `BlobPersisted` (default `gcs`). */
  readonly name?: string;
  /** A client built elsewhere (tests, shared credentials); default: one built from the config. */
  readonly storage?: Storage;
};

const contentType = 'application/octet-stream';

/**
 * A BlobStore on a Google Cloud Storage bucket (or an emulator): object `n` is the GCS object
 * `n`. GCS makes an object visible only when its upload is finalised, which is what makes a
 * put atomic here: a body up to `resumableThresholdBytes` is held and sent in one request
 * once it has ended and its size is right; a larger one goes through a resumable upload in
 * `chunkSizeBytes` requests, whose last (finalising) request is sent only after the body has
 * ended with the right size. Any failure before that abandons the session (and cancels it),
 * so the previous object, if any, stays. Downloads are plain ranged GETs of the object's
 * generation that was stat'ed (the client library's read stream, when destroyed, tears down
 * the sockets of every request in flight, so it is not used).
 */
export const createGcsBlobStore = (options: GcsBlobStoreOptions): BlobStore => {
  if (options.bucket === '') {
    throw new ShoalError('CONFIG_INVALID', 'gcs backend: bucket must be set');
  }
  const threshold = options.resumableThresholdBytes ?? defaults.resumableThresholdBytes;
  const chunkSize = options.chunkSizeBytes ?? defaults.chunkSizeBytes;
  const timeoutMs = options.timeoutMs ?? defaults.timeoutMs;
  const maxAttempts = options.maxAttempts ?? defaults.maxAttempts;
  if (chunkSize % (256 * 1024) !== 0 || chunkSize <= 0) {
    throw new ShoalError(
      'CONFIG_INVALID',
      'gcs backend: chunkSizeBytes must be a multiple of 256 KiB',
    );
  }
  const storage =
    options.storage ??
    new Storage({
      ...(options.endpoint && { apiEndpoint: options.endpoint }),
      ...(options.projectId && { projectId: options.projectId }),
      ...(options.keyFilename && { keyFilename: options.keyFilename }),
      // A custom endpoint gets credentials only when some are configured explicitly.
      ...(options.endpoint && options.keyFilename && { useAuthWithCustomEndpoint: true }),
      timeout: timeoutMs,
      retryOptions: {
        autoRetry: maxAttempts > 1,
        maxRetries: maxAttempts - 1,
        maxRetryDelay: 8,
        // Puts are of content-addressed names: repeating one is harmless.
        idempotencyStrategy: IdempotencyStrategy.RetryAlways,
      },
    });
  const bucket = storage.bucket(options.bucket);
  const endpoint = storage.apiEndpoint;
  const where = `gcs bucket "${options.bucket}" at ${endpoint}`;
  // Downloads and the start of an upload are retried before their first byte; chunks of an
  // upload are not (a resent chunk is the resumable protocol's business).
  const transport = createHttpTransport({
    idleTimeoutMs: timeoutMs,
    maxAttempts,
    retryStatuses: unavailableStatuses,
  });

  const fileOf = (name: string) => bucket.file(orThrow(parseObjectName(name)));

  const unavailable = (what: string, cause?: unknown) =>
    new ShoalError('STORAGE_UNAVAILABLE', `${where}: ${what}: ${reason(cause)}`, {
      cause,
      detail: { endpoint, bucket: options.bucket },
    });
  /** Vendor errors become ShoalErrors here; body-stream errors and ShoalErrors pass. */
  const translate = (what: string) => (error: unknown) => {
    throw isShoalError(error) ? error : unavailable(what, error);
  };

  const metadataOf = async (name: string, file: File) => {
    try {
      const [metadata] = await file.getMetadata();
      return { size: Number(metadata.size ?? 0), generation: String(metadata.generation ?? '') };
    } catch (error) {
      if (statusOf(error) === 404) return undefined;
      throw unavailable(`stat ${name}`, error);
    }
  };

  /** Headers that authorise a request: none for an emulator, else the client's. */
  const authHeaders = async (): Promise<Record<string, string>> => {
    if (storage.customEndpoint && !storage.useAuthWithCustomEndpoint) return {};
    try {
      return (await storage.authClient.getRequestHeaders()) as Record<string, string>;
    } catch (error) {
      throw unavailable('credentials', error);
    }
  };

  /** A ranged GET of one generation; `undefined` when that generation is gone. */
  const download = async (name: string, generation: string, start: number, end: number) => {
    const url = new URL(
      `${endpoint}/storage/v1/b/${encodeURIComponent(options.bucket)}/o/` +
        `${encodeURIComponent(name)}?alt=media&generation=${encodeURIComponent(generation)}`,
    );
    const headers = {
      ...(await authHeaders()),
      range: `bytes=${start}-${end}`,
      'accept-encoding': 'identity',
    };
    let response: HttpResponse;
    try {
      response = await transport.request({ method: 'GET', url, headers });
    } catch (error) {
      throw unavailable(`read ${name}`, error instanceof HttpExchangeError ? error.cause : error);
    }
    const status = response.status;
    if (status === 200 || status === 206) return response;
    drop(response.body);
    if (status === 404) return undefined;
    throw unavailable(`read ${name}`, `GET answered ${status}`);
  };

  const putFrom = async (
    name: string,
    file: File,
    source: AsyncIterator<Uint8Array | string>,
    expected: number | undefined,
  ): Promise<ObjectStat> => {
    const next = async (): Promise<Buffer | undefined> => {
      for (;;) {
        const step = await source.next();
        if (step.done) return undefined;
        const bytes = asBuffer(step.value);
        if (bytes.length > 0) return bytes;
      }
    };
    let written = 0;
    const count = (bytes: Buffer) => {
      written += bytes.length;
      if (expected !== undefined && written > expected) throw sizeMismatch(name, expected);
      return bytes;
    };

    // Small bodies: hold them, check the size, send them in one request.
    const head: Buffer[] = [];
    let ended = false;
    if (expected === undefined || expected <= threshold) {
      while (written <= threshold) {
        const bytes = await next();
        if (bytes === undefined) {
          ended = true;
          break;
        }
        head.push(count(bytes));
      }
    }
    if (ended) {
      if (expected !== undefined && written !== expected) throw sizeMismatch(name, expected);
      await file
        .save(Buffer.concat(head), { resumable: false, validation: false, contentType })
        .catch(translate(`put ${name}`));
      return { size: written };
    }

    // Large bodies: a resumable upload whose finalising request is sent only once the body
    // has ended with the right size.
    const session = await startSession(name);
    try {
      return await uploadChunks(
        name,
        session,
        head.splice(0),
        async () => {
          const bytes = await next();
          return bytes && count(bytes);
        },
        () => {
          if (expected !== undefined && written !== expected) throw sizeMismatch(name, expected);
          return written;
        },
      );
    } catch (error) {
      void cancel(transport, session);
      throw error;
    }
  };

  /** Opens a resumable upload session: the URL its chunks are PUT to. */
  const startSession = async (name: string): Promise<URL> => {
    const url = new URL(`${endpoint}/upload/storage/v1/b/${encodeURIComponent(options.bucket)}/o`);
    url.searchParams.set('uploadType', 'resumable');
    url.searchParams.set('name', name);
    const headers = {
      ...(await authHeaders()),
      'content-type': 'application/json; charset=UTF-8',
      'x-upload-content-type': contentType,
    };
    const metadata = Buffer.from(JSON.stringify({ name, contentType }));
    let response: HttpResponse;
    try {
      response = await transport.request({ method: 'POST', url, headers, body: metadata });
    } catch (error) {
      const cause = error instanceof HttpExchangeError ? error.cause : error;
      throw unavailable(`put ${name}: start an upload`, cause);
    }
    discard(response.body);
    const location = headerOf(response.headers, 'location');
    if (response.status === 200 && location) return new URL(location, url);
    throw unavailable(`put ${name}: start an upload`, `POST answered ${response.status}`);
  };

  /**
   * Sends the body in `chunkSize` requests (`bytes a-b/*`: never final) as it arrives; once
   * it has ended and `finish()` accepts its size, the rest goes in the one request that names
   * the total and so finalises the object. Holds at most one chunk (and one read) in memory.
   */
  const uploadChunks = async (
    name: string,
    session: URL,
    head: Buffer[],
    next: () => Promise<Buffer | undefined>,
    finish: () => number,
  ): Promise<ObjectStat> => {
    const auth = await authHeaders();
    const put = async (parts: Buffer[], range: string) => {
      let response: HttpResponse;
      try {
        response = await transport.request({
          method: 'PUT',
          url: session,
          headers: { ...auth, 'content-range': range },
          body: parts,
          retry: false,
        });
      } catch (error) {
        throw unavailable(`put ${name}`, error instanceof HttpExchangeError ? error.cause : error);
      }
      discard(response.body);
      return response;
    };
    // Chunks live only in `pending` and in the frame of the request sending them: nothing
    // else keeps a sent chunk alive while the next one fills.
    let pending = head;
    let pendingBytes = byteLength(head);
    let offset = 0;
    const fill = async (): Promise<boolean> => {
      while (pendingBytes < chunkSize) {
        const bytes = await next();
        if (bytes === undefined) return true;
        pending.push(bytes);
        pendingBytes += bytes.length;
      }
      return false;
    };
    const sendChunk = async () => {
      const [chunk, rest] = splitAt(pending, chunkSize);
      pending = rest;
      pendingBytes -= chunkSize;
      const res = await put(chunk, `bytes ${offset}-${offset + chunkSize - 1}/*`);
      if (res.status !== 308) {
        throw unavailable(`put ${name}`, `an upload request answered ${res.status}`);
      }
      // The server says how much it kept (`bytes=0-N`); resend what it did not.
      const kept = /^bytes=0-(\d+)$/.exec(headerOf(res.headers, 'range') ?? '');
      const persisted = kept ? Number(kept[1]) + 1 : 0;
      if (persisted < offset || persisted > offset + chunkSize) {
        throw unavailable(
          `put ${name}`,
          `the server kept ${persisted} of ${offset + chunkSize} bytes`,
        );
      }
      const unsent = splitAt(chunk, persisted - offset)[1];
      pending = [...unsent, ...pending];
      pendingBytes += byteLength(unsent);
      offset = persisted;
    };
    const sendLast = async () => {
      const total = finish();
      const range =
        pendingBytes === 0 ? `bytes */${total}` : `bytes ${offset}-${total - 1}/${total}`;
      const res = await put(pending, range);
      if (res.status !== 200 && res.status !== 201) {
        throw unavailable(`put ${name}`, `the last upload request answered ${res.status}`);
      }
      return { size: total };
    };
    while (!(await fill())) await sendChunk();
    return sendLast();
  };

  return {
    name: options.name ?? 'gcs',

    stat: async (name): Promise<ObjectStat | undefined> => {
      const found = await metadataOf(name, fileOf(name));
      return found && { size: found.size };
    },

    get: async (name, range?: ByteRange): Promise<ObjectRead> => {
      const file = fileOf(name);
      // The object may be replaced between stat and read: then read the new one.
      for (let attempt = 1; ; attempt++) {
        const found = await metadataOf(name, file);
        if (found === undefined) throw unknown(name);
        const { start, end } = orThrow(resolveRange(found.size, range));
        if (end < start) return { stream: Readable.from([]), size: found.size, start, end };
        const res = await download(name, found.generation, start, end);
        if (res === undefined) {
          if (attempt < 3) continue;
          throw unknown(name);
        }
        // A 200 is the whole object (a server that ignores Range): skip to the start.
        const first = res.status === 206 ? start : 0;
        const stream = sliceBody(res.body, {
          skip: start - first,
          length: end - start + 1,
          bodyLength: contentLengthOf(res.headers),
          fail: (why, cause) => unavailable(`read ${name}: ${why}`, cause),
        });
        return { stream, size: found.size, start, end };
      }
    },

    put: async (name, body: ByteSource, putOptions = {}) => {
      const file = fileOf(name);
      const source = (body as AsyncIterable<Uint8Array | string>)[Symbol.asyncIterator]();
      try {
        return await putFrom(name, file, source, putOptions.size);
      } finally {
        // Release the body when the put stops early (a size mismatch, a failed upload).
        await source.return?.();
      }
    },

    delete: async (name) => {
      const file = fileOf(name);
      try {
        await file.delete();
        return true;
      } catch (error) {
        if (statusOf(error) === 404) return false;
        throw unavailable(`delete ${name}`, error);
      }
    },

    list: (prefix = '') => listObjects(prefix),

    check: async () => {
      let exists: boolean;
      try {
        [exists] = await bucket.exists();
      } catch (error) {
        const status = statusOf(error);
        if (status === 401 || status === 403) {
          throw new ShoalError('CONFIG_INVALID', `${where}: credentials refused (${status})`, {
            cause: error,
          });
        }
        throw unavailable('check', error);
      }
      if (!exists) {
        throw new ShoalError(
          'CONFIG_INVALID',
          `gcs bucket "${options.bucket}" does not exist at ${endpoint}`,
          { detail: { endpoint, bucket: options.bucket } },
        );
      }
    },
  };

  async function* listObjects(prefix: string): AsyncGenerator<string> {
    const slash = prefix.lastIndexOf('/');
    if (slash !== -1) orThrow(parseObjectPrefix(prefix.slice(0, slash)));
    let pageToken: string | undefined;
    do {
      const [files, nextQuery] = await bucket
        .getFiles({ prefix, autoPaginate: false, maxResults: 1000, pageToken })
        .catch(translate(`list ${prefix}`));
      // GCS lists in byte order of the UTF-8 names: code-point order.
      for (const file of files) if (parseObjectName(file.name).ok) yield file.name;
      pageToken = (nextQuery as { pageToken?: string } | null | undefined)?.pageToken;
    } while (pageToken);
  }
};

/** A chunk of a body as a Buffer, without copying its bytes. */
const asBuffer = (chunk: Uint8Array | string): Buffer =>
  typeof chunk === 'string'
    ? Buffer.from(chunk)
    : Buffer.isBuffer(chunk)
      ? chunk
      : Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength);

const byteLength = (buffers: readonly Buffer[]) =>
  buffers.reduce((sum, bytes) => sum + bytes.length, 0);

/** Splits buffers at byte `at`: [the first `at` bytes, the rest], without copying. */
const splitAt = (buffers: Buffer[], at: number): [Buffer[], Buffer[]] => {
  const first: Buffer[] = [];
  const rest: Buffer[] = [];
  let left = at;
  for (const bytes of buffers) {
    if (left >= bytes.length) first.push(bytes);
    else if (left <= 0) rest.push(bytes);
    else {
      first.push(bytes.subarray(0, left));
      rest.push(bytes.subarray(left));
    }
    left -= bytes.length;
  }
  return [first, rest];
};

/** Cancels a resumable upload session (best effort: unfinalised sessions expire anyway). */
const cancel = async (transport: HttpTransport, session: URL): Promise<void> => {
  try {
    const res = await transport.request({
      method: 'DELETE',
      url: session,
      body: Buffer.alloc(0),
      retry: false,
    });
    discard(res.body);
  } catch {
    // Nothing to do: the session is never finalised.
  }
};

const statusOf = (error: unknown): number | undefined => {
  const e = error as { code?: unknown; status?: unknown; response?: { status?: unknown } } | null;
  if (typeof e?.code === 'number') return e.code;
  if (typeof e?.status === 'number') return e.status;
  if (typeof e?.response?.status === 'number') return e.response.status;
  return undefined;
};

const reason = (cause: unknown): string => {
  if (cause === undefined) return 'failed';
  if (typeof cause === 'string') return cause;
  const status = statusOf(cause);
  const text = describeHttpError(cause).split('\n')[0] ?? '';
  return status !== undefined && !text.includes(String(status)) ? `${status} ${text}` : text;
};

const unknown = (name: string) =>
  new ShoalError('BLOB_UNKNOWN', `object ${name} does not exist`, { detail: { name } });

const sizeMismatch = (name: string, expected: number) =>
  new ShoalError('SIZE_INVALID', `object ${name}: body is not the announced ${expected} bytes`, {
    detail: { name, size: expected },
  });

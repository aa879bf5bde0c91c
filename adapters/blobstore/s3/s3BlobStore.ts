import { Readable } from 'node:stream';
import type { S3ClientConfig } from '@aws-sdk/client-s3';
import {
  DeleteObjectCommand,
  GetObjectCommand,
  HeadBucketCommand,
  HeadObjectCommand,
  ListObjectsV2Command,
  S3Client,
} from '@aws-sdk/client-s3';
import type { Static } from '@sinclair/typebox';
import { Type } from '@sinclair/typebox';
import type { BlobStore, ByteRange, ByteSource, ObjectRead, ObjectStat } from '../../../domain';
import { ShoalError, isShoalError, orThrow, parseObjectName, resolveRange } from '../../../domain';
import { parseServedRange } from '../../../kit/http/range';
import { uploadObject } from './uploadObject';

const MiB = 1024 * 1024;
/** S3's floor for every multipart part but the last. */
export const s3MinPartSizeBytes = 5 * MiB;
/** S3's ceiling on the parts of one multipart upload. */
const maxParts = 10_000;

/** The `s3` backend's configuration; every field has a default. */
export const S3BackendConfigSchema = Type.Object(
  {
    bucket: Type.String({
      default: '',
      description: 'bucket holding the objects; must be set, and must exist (never created)',
    }),
    region: Type.String({
      default: 'us-east-1',
      description:
        'region the requests are signed for (S3-compatible servers mostly want us-east-1)',
    }),
    endpoint: Type.String({
      default: '',
      description: 'URL of an S3-compatible server, e.g. http://127.0.0.1:7070; empty: AWS S3',
    }),
    forcePathStyle: Type.Boolean({
      default: false,
      description:
        'address buckets as <endpoint>/<bucket> rather than <bucket>.<endpoint> ' +
        '(most S3-compatible servers need true)',
    }),
    accessKeyId: Type.String({
      default: '',
      description:
        'access key id; empty: the standard AWS credential chain (environment, shared ' +
        'config and credentials files, SSO, web identity, container or instance role)',
    }),
    secretAccessKey: Type.String({
      default: '',
      description: 'secret access key, set together with accessKeyId; empty: the credential chain',
    }),
    sessionToken: Type.String({
      default: '',
      description: 'session token of temporary credentials; empty: none (or the credential chain)',
    }),
    partSizeBytes: Type.Integer({
      default: 16 * MiB,
      minimum: s3MinPartSizeBytes,
      description:
        'bodies up to this size are stored with one PutObject, larger ones by a multipart ' +
        'upload in parts of this size (raised when a known size needs more than 10000 parts); ' +
        'a put holds about queueSize + 1 parts in memory',
    }),
    queueSize: Type.Integer({
      default: 4,
      minimum: 1,
      description: 'parts of one multipart upload in flight at once',
    }),
    timeoutMs: Type.Integer({
      default: 30_000,
      minimum: 1,
      description:
        'connect timeout, and inactivity timeout of a request socket: a read stream left ' +
        'unread for this long is closed with an error',
    }),
    maxAttempts: Type.Integer({
      default: 3,
      minimum: 1,
      description: 'tries per request (with the SDK backoff) on throttling, 5xx and network errors',
    }),
    checksums: Type.Union([Type.Literal('when_required'), Type.Literal('when_supported')], {
      default: 'when_required',
      description:
        'when the SDK adds CRC32 checksums to uploads and validates those of downloads: ' +
        'when_required, only where S3 demands one; when_supported, always (the SDK default ' +
        'since 2025, sent as aws-chunked trailers that many S3-compatible servers reject). ' +
        'Blobs are content-addressed and verified by their digest either way',
    }),
  },
  { default: {} },
);

export type S3BackendConfig = Static<typeof S3BackendConfigSchema>;

export type S3BlobStoreConfig = S3BackendConfig & {
  /** The backend's name in `BlobPersisted` (default `s3`). */
  readonly name?: string;
};

export type S3BlobStoreDeps = {
  /** An already-built client (tests, shared clients); the config's connection fields go unused. */
  readonly client?: S3Client;
  /** Keys asked per ListObjectsV2 page (default 1000, S3's maximum); tests lower it. */
  readonly listPageSize?: number;
};

/** The client the config describes; exported for tools and tests that need the same one. */
export const createS3Client = (config: S3BackendConfig): S3Client => {
  const checksums = config.checksums === 'when_supported' ? 'WHEN_SUPPORTED' : 'WHEN_REQUIRED';
  const options: S3ClientConfig = {
    region: config.region,
    forcePathStyle: config.forcePathStyle,
    maxAttempts: config.maxAttempts,
    requestChecksumCalculation: checksums,
    responseChecksumValidation: checksums,
    // socketTimeout is the inactivity timeout; requestTimeout would bound a whole (long) read.
    requestHandler: { connectionTimeout: config.timeoutMs, socketTimeout: config.timeoutMs },
    ...(config.endpoint !== '' && { endpoint: config.endpoint }),
    ...(config.accessKeyId !== '' && {
      credentials: {
        accessKeyId: config.accessKeyId,
        secretAccessKey: config.secretAccessKey,
        ...(config.sessionToken !== '' && { sessionToken: config.sessionToken }),
      },
    }),
  };
  return new S3Client(options);
};

/**
 * A BlobStore on an S3 bucket (AWS or S3-compatible): object `a/b/c` is the key `a/b/c`, as is
 * (the caller adds any prefix). S3 makes an object visible only when its PutObject or
 * CompleteMultipartUpload succeeds, so a put is atomic: a body that fails, or is not of the
 * announced size, fails before that request, and a started multipart upload is aborted.
 * Reads are ranged GETs whose stream is the HTTP response: destroying it closes the socket.
 */
export const createS3BlobStore = (
  config: S3BlobStoreConfig,
  deps: S3BlobStoreDeps = {},
): BlobStore => {
  const bucket = config.bucket;
  const endpoint =
    config.endpoint === '' ? `https://s3.${config.region}.amazonaws.com` : config.endpoint;
  if (bucket === '') throw configInvalid('s3 backend: bucket is not set');
  if (!Number.isSafeInteger(config.partSizeBytes) || config.partSizeBytes < s3MinPartSizeBytes) {
    throw configInvalid(`s3 backend: partSizeBytes must be at least ${s3MinPartSizeBytes} (5 MiB)`);
  }
  if (!Number.isSafeInteger(config.queueSize) || config.queueSize < 1) {
    throw configInvalid('s3 backend: queueSize must be at least 1');
  }
  if ((config.accessKeyId === '') !== (config.secretAccessKey === '')) {
    throw configInvalid('s3 backend: set accessKeyId and secretAccessKey together, or neither');
  }
  const client = deps.client ?? createS3Client(config);
  const where = `${endpoint} bucket "${bucket}"`;
  const keyOf = (name: string) => orThrow(parseObjectName(name));
  const fail = (error: unknown, what: string) => storageError(error, what, where);

  const head = async (key: string): Promise<ObjectStat | undefined> => {
    try {
      const out = await client.send(new HeadObjectCommand({ Bucket: bucket, Key: key }));
      return { size: out.ContentLength ?? 0 };
    } catch (error) {
      // A HEAD has no error body: a missing bucket is a 404 too (check() tells them apart).
      if (statusOf(error) === 404) return undefined;
      throw fail(error, `stat ${key}`);
    }
  };

  const rangeError = async (key: string, range: ByteRange): Promise<ShoalError> => {
    const stat = await head(key);
    if (stat === undefined) return unknown(key);
    const resolved = resolveRange(stat.size, range);
    // Satisfiable now: the object was replaced between the two requests.
    return resolved.ok
      ? new ShoalError('RANGE_INVALID', `range ${range.start}-${range.end ?? ''} of ${key} changed`)
      : resolved.error;
  };

  return {
    name: config.name ?? 's3',

    stat: async (name) => head(keyOf(name)),

    get: async (name, range?: ByteRange): Promise<ObjectRead> => {
      const key = keyOf(name);
      // A malformed range fails as resolveRange says, whatever the size: ask it with the size.
      if (range !== undefined && !wellFormed(range)) throw await rangeError(key, range);
      let out;
      try {
        out = await client.send(
          new GetObjectCommand({
            Bucket: bucket,
            Key: key,
            ...(range !== undefined && { Range: `bytes=${range.start}-${range.end ?? ''}` }),
          }),
        );
      } catch (error) {
        const status = statusOf(error);
        if (status === 404 && nameOf(error) === 'NoSuchKey') throw unknown(key);
        if (status === 416 && range !== undefined) throw await rangeError(key, range);
        throw fail(error, `get ${key}`);
      }
      const body = out.Body as Readable | undefined;
      const total =
        parseServedRange(out.ContentRange)?.size ??
        (range === undefined ? out.ContentLength : undefined);
      if (body === undefined || total === undefined) {
        body?.destroy();
        throw fail(new Error('response without a body or a size'), `get ${key}`);
      }
      const resolved = resolveRange(total, range);
      if (!resolved.ok) {
        body.destroy();
        throw resolved.error;
      }
      const { start, end } = resolved.value;
      if (
        out.ContentRange === undefined &&
        range !== undefined &&
        (start !== 0 || end !== total - 1)
      ) {
        body.destroy();
        throw fail(new Error('the server ignored the Range header'), `get ${key}`);
      }
      return {
        stream: guarded(body, (error) => fail(error, `read ${key}`)),
        size: total,
        start,
        end,
      };
    },

    put: async (name, body: ByteSource, options = {}) => {
      const key = keyOf(name);
      const expected = options.size;
      if (expected !== undefined && (!Number.isSafeInteger(expected) || expected < 0)) {
        throw new ShoalError('SIZE_INVALID', `object ${key}: invalid size ${expected}`, {
          detail: { name: key, size: expected },
        });
      }
      let written = 0;
      let bodyError: unknown;
      async function* checked(): AsyncGenerator<Uint8Array> {
        try {
          for await (const chunk of body as AsyncIterable<Uint8Array | string>) {
            const bytes = typeof chunk === 'string' ? Buffer.from(chunk) : chunk;
            written += bytes.length;
            if (expected !== undefined && written > expected) throw sizeMismatch(key, expected);
            yield bytes;
          }
        } catch (error) {
          bodyError = error;
          throw error;
        }
        if (expected !== undefined && written !== expected) {
          throw (bodyError = sizeMismatch(key, expected));
        }
      }
      const target = {
        client,
        bucket,
        key,
        // S3 takes at most 10000 parts: a known large size raises the part size.
        partSize: Math.max(config.partSizeBytes, Math.ceil((expected ?? 0) / maxParts)),
        queueSize: config.queueSize,
        crc32: config.checksums === 'when_supported',
      };
      try {
        await uploadObject(target, checked());
      } catch (error) {
        // The body's own error (or SIZE_INVALID) passes through as it is.
        if (bodyError !== undefined) throw bodyError;
        throw fail(error, `put ${key}`);
      }
      return { size: written };
    },

    delete: async (name) => {
      const key = keyOf(name);
      // S3 deletes idempotently and does not say whether the key existed: ask first.
      if ((await head(key)) === undefined) return false;
      try {
        await client.send(new DeleteObjectCommand({ Bucket: bucket, Key: key }));
      } catch (error) {
        if (statusOf(error) === 404 && nameOf(error) === 'NoSuchKey') return false;
        throw fail(error, `delete ${key}`);
      }
      return true;
    },

    list: (prefix = '') => listKeys(client, bucket, prefix, deps.listPageSize, fail),

    check: async () => {
      try {
        await client.send(new HeadBucketCommand({ Bucket: bucket }));
        return;
      } catch (error) {
        throw await checkError(error);
      }
    },
  };

  /** Turns a failed HeadBucket into CONFIG_INVALID (config must change) or STORAGE_UNAVAILABLE. */
  async function checkError(error: unknown): Promise<ShoalError> {
    if (nameOf(error) === 'CredentialsProviderError') {
      return configInvalid(
        's3 credentials: accessKeyId is not set and the AWS credential chain found none ' +
          `(${messageOf(error)})`,
        error,
      );
    }
    const status = statusOf(error);
    if (status === undefined || status >= 500 || status === 429 || status === 408) {
      return fail(error, 'check');
    }
    // A HEAD answer has no body, so no S3 error code: a 404 may be a missing bucket or (on
    // versitygw) an unknown access key. Ask again with a GET to learn the code.
    let code: string;
    try {
      await client.send(new ListObjectsV2Command({ Bucket: bucket, MaxKeys: 1 }));
      code = nameOf(error);
    } catch (again) {
      const againStatus = statusOf(again);
      if (againStatus === undefined || againStatus >= 500) return fail(again, 'check');
      code = nameOf(again);
    }
    const who =
      config.accessKeyId === '' ? 'the AWS credential chain' : `access key "${config.accessKeyId}"`;
    const reason = (message: string) => configInvalid(`${message} (${code})`, error);
    switch (code) {
      case 'NoSuchBucket':
        return configInvalid(`s3 bucket "${bucket}" does not exist at ${endpoint}`, error);
      case 'InvalidAccessKeyId':
      case 'XAdminUserNotFound':
        return reason(`s3 credentials refused: ${who} is not known at ${endpoint}`);
      case 'SignatureDoesNotMatch':
        return reason(`s3 credentials refused: the secret access key of ${who} is wrong`);
      case 'PermanentRedirect':
      case 'AuthorizationHeaderMalformed':
        return reason(`s3 bucket "${bucket}" at ${endpoint} is not in region "${config.region}"`);
      default:
        if (status === 404) {
          return configInvalid(`s3 bucket "${bucket}" does not exist at ${endpoint}`, error);
        }
        return reason(`s3 bucket "${bucket}" at ${endpoint} refuses ${who} (HTTP ${status})`);
    }
  }
};

async function* listKeys(
  client: S3Client,
  bucket: string,
  prefix: string,
  pageSize: number | undefined,
  fail: (error: unknown, what: string) => ShoalError,
): AsyncGenerator<string> {
  let token: string | undefined;
  let last = '';
  do {
    let page;
    try {
      page = await client.send(
        new ListObjectsV2Command({
          Bucket: bucket,
          ...(prefix !== '' && { Prefix: prefix }),
          ...(pageSize !== undefined && { MaxKeys: pageSize }),
          ...(token !== undefined && { ContinuationToken: token }),
        }),
      );
    } catch (error) {
      throw fail(error, `list ${prefix}`);
    }
    for (const { Key: key } of page.Contents ?? []) {
      // S3 lists in UTF-8 byte order, which is code-point order; names outside the port's
      // grammar (written by others into a shared bucket, folder markers) are not ours.
      if (key === undefined || key <= last || !parseObjectName(key).ok) continue;
      last = key;
      yield key;
    }
    token = page.IsTruncated === true ? page.NextContinuationToken : undefined;
  } while (token !== undefined);
}

/**
 * The response body, with its errors translated (a server gone mid-read is
 * STORAGE_UNAVAILABLE). Destroying the returned stream destroys the response, which closes
 * the socket and so aborts the HTTP request.
 */
const guarded = (body: Readable, translate: (error: unknown) => ShoalError): Readable => {
  const out = new Readable({
    read: () => {
      body.resume();
    },
    destroy: (error, callback) => {
      body.destroy();
      callback(error);
    },
  });
  body.on('data', (chunk: Buffer) => {
    if (!out.push(chunk)) body.pause();
  });
  body.once('end', () => out.push(null));
  body.once('error', (error) => out.destroy(translate(error)));
  // A response closed before its end without an error (a reset socket) is an error too.
  body.once('close', () => {
    if (!body.readableEnded && !out.destroyed)
      out.destroy(translate(new Error('response closed early')));
  });
  body.pause();
  return out;
};

const wellFormed = ({ start, end }: ByteRange) =>
  Number.isSafeInteger(start) &&
  start >= 0 &&
  (end === undefined || (Number.isSafeInteger(end) && end >= start));

type SdkError = {
  name?: string;
  code?: string;
  message?: string;
  $metadata?: { httpStatusCode?: number };
  $response?: { statusCode?: number };
};

const statusOf = (error: unknown): number | undefined => {
  const e = error as SdkError | null;
  return e?.$metadata?.httpStatusCode ?? e?.$response?.statusCode;
};

/**
 * S3's error code, else Node's errno code, else the error's name. The SDK re-wraps an error
 * that is not `instanceof Error` of its realm (under jest, Node's own errors) in a plain
 * Error whose message alone still names the errno code.
 */
const nameOf = (error: unknown): string => {
  const e = error as SdkError | null;
  if (statusOf(error) !== undefined && e?.name !== undefined) return e.name;
  return e?.code ?? /\b(E[A-Z][A-Z_]{2,})\b/.exec(e?.message ?? '')?.[1] ?? e?.name ?? 'error';
};

const messageOf = (error: unknown) => (error as SdkError | null)?.message ?? String(error);

/**
 * Network errors, timeouts, throttling and 5xx: the backend cannot be reached (retriable);
 * other refusals (403, 400) are STORAGE_UNAVAILABLE too, but will not pass by retrying.
 */
const storageError = (error: unknown, what: string, where: string): ShoalError => {
  if (isShoalError(error)) return error;
  const status = statusOf(error);
  const name = nameOf(error);
  if (name === 'CredentialsProviderError') {
    return new ShoalError('STORAGE_UNAVAILABLE', `s3 store: ${what}: no credentials for ${where}`, {
      cause: error,
      retriable: false,
    });
  }
  const transient = status === undefined || status >= 500 || status === 429 || status === 408;
  const how =
    status === undefined
      ? `is unreachable (${name})`
      : transient
        ? `failed (${name}, HTTP ${status})`
        : `refused the request (${name}, HTTP ${status})`;
  return new ShoalError('STORAGE_UNAVAILABLE', `s3 store: ${what}: ${where} ${how}`, {
    cause: error,
    retriable: transient,
  });
};

const configInvalid = (message: string, cause?: unknown) =>
  new ShoalError('CONFIG_INVALID', message, cause === undefined ? {} : { cause });

const unknown = (name: string) =>
  new ShoalError('BLOB_UNKNOWN', `object ${name} does not exist`, { detail: { name } });

const sizeMismatch = (name: string, expected: number) =>
  new ShoalError('SIZE_INVALID', `object ${name}: body is not the announced ${expected} bytes`, {
    detail: { name, size: expected },
  });

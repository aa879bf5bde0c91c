import type { Digest } from '../oci/digest';
import { digestAlgorithm, digestHex, parseDigest, truncate } from '../oci/digest';
import { ShoalError } from '../shared/errors';
import type { Result } from '../shared/result';
import { fail, ok } from '../shared/result';

/*
 * Streams in this port are Node's: adapters return `stream.Readable`s and accept anything a
 * `for await` can read. They are typed through the global `NodeJS` namespace because domain/
 * imports no `node:*` module (the lint rule), yet every adapter and service runs on Node.
 */

/** Bytes to put: a `stream.Readable`, or any async iterable of chunks. */
export type ByteSource = AsyncIterable<Uint8Array> | NodeJS.ReadableStream;

/** A byte range, `end` inclusive as in HTTP `Range: bytes=start-end`; no `end` = to the end. */
export type ByteRange = { readonly start: number; readonly end?: number };

export type ObjectStat = {
  /** Size in bytes. */
  readonly size: number;
};

export type ObjectRead = {
  /** The requested bytes; destroy it to stop early (the adapter then frees what it holds). */
  readonly stream: NodeJS.ReadableStream;
  /** Size of the whole object, not of the range. */
  readonly size: number;
  /** First byte in the stream. */
  readonly start: number;
  /** Last byte in the stream (inclusive); `start - 1` for an empty object read whole. */
  readonly end: number;
};

/**
 * Where blob bytes are kept for good: a storage backend (filesystem, S3, GCS, HTTP, another
 * registry). It
 * stores opaque objects under names built by {@link blobObjectName}; it knows nothing of
 * digests, so it never verifies content: callers verify what they put and what they read.
 *
 * Contract, kept by every adapter and checked by `describeBlobStoreContract`:
 * - **Names** are `/`-separated segments of `[A-Za-z0-9._-]`, none empty, none starting with
 *   `.`, at most {@link objectNameMaxLength} characters (see {@link parseObjectName}); others
 *   fail with `PARAMETER_INVALID` before any I/O.
 * - **Atomic put.** `put` streams the body and makes the object visible whole or not at all:
 *   while it runs, readers see the previous object (or none); when the body stream fails or
 *   `options.size` does not match, nothing changes. Putting an existing name replaces it
 *   atomically (content-addressed names make that harmless). When `put` resolves the object
 *   is durable (survives a crash of the process, and of the host where the backend can tell).
 * - **Streaming.** No call holds a whole object in memory; back-pressure is honoured.
 * - **Ranges.** `get` with `{start, end}` returns bytes `start..min(end, size - 1)`; a start
 *   at or beyond the size, or after `end`, fails with `RANGE_INVALID` before any byte.
 * - **Listing** yields every visible name starting with the prefix (a plain string prefix,
 *   as in S3), each once, in code-point order; never a partial upload.
 * - **Errors.** `BLOB_UNKNOWN` from `get` on a missing object (`stat` answers `undefined`),
 *   `SIZE_INVALID` from `put` on a size mismatch, `STORAGE_UNAVAILABLE` (retriable) when the
 *   backend cannot be reached or refuses a write; errors of the body stream pass through.
 */
export interface BlobStore {
  /** The name this backend is known by, recorded in `BlobPersisted.backend`. */
  readonly name: string;

  /** Size of an object, or `undefined` when it does not exist. */
  stat(name: string): Promise<ObjectStat | undefined>;

  /** Opens an object, whole or a byte range, for streaming. */
  get(name: string, range?: ByteRange): Promise<ObjectRead>;

  /** Stores an object from a stream, atomically. `size`, when known, is checked. */
  put(name: string, body: ByteSource, options?: { size?: number }): Promise<ObjectStat>;

  /** Removes an object; resolves `true` when it existed. Idempotent. */
  delete(name: string): Promise<boolean>;

  /** Names starting with `prefix` (all by default), in code-point order. */
  list(prefix?: string): AsyncIterable<string>;

  /**
   * Read-only backends (another registry, an HTTP server without write) refuse `put` and
   * `delete` with `UNSUPPORTED`; the origin sends them no write-back and refuses pushes to the
   * repositories routed to them. Absent: writable.
   */
  readonly readOnly?: boolean;

  /**
   * Checks, once at start and for readiness, that the backend is usable: reachable, the
   * credentials accepted, the bucket (or root) present. Throws `STORAGE_UNAVAILABLE` (may pass)
   * or `CONFIG_INVALID` (will not pass without a config change) with a message naming the
   * cause, e.g. `s3 bucket "blobs" does not exist at http://127.0.0.1:7070`.
   */
  check?(): Promise<void>;

  /**
   * For backends that address blobs by repository (another OCI registry): the store that
   * reads the blobs of `repo`. The unscoped store then refuses reads with `PARAMETER_INVALID`.
   * Absent: the store serves every repository alike.
   */
  forRepository?(repo: string): BlobStore;
}

export const objectNameMaxLength = 1024;

const segment = /^[A-Za-z0-9_-][A-Za-z0-9._-]{0,254}$/;

/** Checks a backend object name against the port's grammar. */
export const parseObjectName = (input: string): Result<string> => {
  const bad = (why: string) =>
    fail(
      new ShoalError('PARAMETER_INVALID', `invalid object name "${truncate(input)}": ${why}`, {
        detail: { name: truncate(input) },
      }),
    );
  if (input.length === 0) return bad('empty');
  if (input.length > objectNameMaxLength) return bad(`longer than ${objectNameMaxLength}`);
  for (const part of input.split('/')) {
    if (!segment.test(part)) {
      return bad('want "/"-separated segments of [A-Za-z0-9._-], none empty or starting with "."');
    }
  }
  return ok(input);
};

/** A prefix for object names: empty, or valid name segments ending with `/`. */
export const parseObjectPrefix = (input: string): Result<string> => {
  if (input === '') return ok('');
  const trimmed = input.replace(/\/+$/, '');
  const parsed = parseObjectName(trimmed);
  return parsed.ok ? ok(`${trimmed}/`) : parsed;
};

const blobsRoot = 'blobs';

/**
 * The backend object name of a blob: `[prefix]blobs/<algorithm>/<hex[0:2]>/<hex>`. Objects are
 * content-addressed and shared by every repository (the repo is on the `BlobUploaded` event,
 * not in the name), and the two-character shard keeps directory listings short on
 * filesystems and spreads S3 key prefixes. `prefix` (e.g. `cluster-a/`) lets clusters share
 * one bucket.
 */
export const blobObjectName = (digest: Digest, prefix = ''): string => {
  const hex = digestHex(digest);
  return `${prefix}${blobsRoot}/${digestAlgorithm(digest)}/${hex.slice(0, 2)}/${hex}`;
};

/** The digest an object name built by {@link blobObjectName} stands for, if it is one. */
export const digestOfObjectName = (name: string, prefix = ''): Digest | undefined => {
  if (!name.startsWith(prefix)) return undefined;
  const parts = name.slice(prefix.length).split('/');
  if (parts.length !== 4 || parts[0] !== blobsRoot) return undefined;
  const [, algorithm, shard, hex] = parts as [string, string, string, string];
  if (!hex.startsWith(shard) || shard.length !== 2) return undefined;
  const parsed = parseDigest(`${algorithm}:${hex}`);
  return parsed.ok ? parsed.value : undefined;
};

/**
 * Resolves a requested range against an object's size, as every adapter must: the inclusive
 * `[start, end]` to read, or `RANGE_INVALID`. No range reads the whole object (even when empty).
 */
export const resolveRange = (
  size: number,
  range: ByteRange | undefined,
): Result<{ start: number; end: number }> => {
  if (range === undefined) return ok({ start: 0, end: size - 1 });
  const { start, end } = range;
  const invalid = (why: string) =>
    fail(
      new ShoalError('RANGE_INVALID', `range ${start}-${end ?? ''} ${why} (size ${size})`, {
        detail: { start, ...(end !== undefined && { end }), size },
      }),
    );
  if (!Number.isSafeInteger(start) || start < 0) return invalid('has an invalid start');
  if (end !== undefined && (!Number.isSafeInteger(end) || end < start)) {
    return invalid('has an invalid end');
  }
  if (start >= size) return invalid('starts beyond the end');
  return ok({ start, end: Math.min(end ?? size - 1, size - 1) });
};

import type { Readable } from 'node:stream';
import type { ByteRange, ErrorCode, Position } from '../../../domain';
import { ShoalError, isShoalError } from '../../../domain';
import type { HttpResponse } from '../../../kit/http/transport';
import { parseServedRange } from '../../../kit/http/range';
import { discard, drop, headerOf, readBody, sliceBody } from '../../../kit/http/transport';
import type { Metainfo } from '../../../p2p/metainfo';
import { positionHeaders } from '../../shared/http';
import type { Attribution } from '../../shared/events';
import { createServiceClient, readJson } from '../../shared/httpClient';
import type { ClientIdentity } from '../../shared/security/clientIdentity';
import { onBehalfOfHeaders } from '../../shared/security/authenticate';

/** The repository and owner an upload session must have (see `UploadBinding`). */
export type Binding = { readonly repo: string; readonly by?: Attribution };

/**
 * Whom a request is for, as the on-behalf-of headers say it: the origin records (and binds
 * sessions to) them when the caller is a cluster service.
 */
const onBehalfOf = (by: Attribution | undefined): Record<string, string> =>
  by === undefined
    ? {}
    : {
        [onBehalfOfHeaders.actor]: by.actor,
        ...(by.client !== undefined && { [onBehalfOfHeaders.client]: by.client }),
      };

/** A body sent to an origin: bytes, or a stream (sent as it comes, with back-pressure). */
export type RequestBody = Readable | Buffer | undefined;

/** What an origin says of the ring (`GET /internal/ring`). */
export type RingInfo = {
  readonly self: string;
  readonly replicas: number;
  readonly members: ReadonlyArray<{ readonly id: string; readonly address: string }>;
  /** With `?digest=`: the digest's owners, best first. */
  readonly owners?: readonly string[];
};

export type BlobStream = {
  readonly stream: Readable;
  /** Size of the whole blob. */
  readonly size: number;
  /** First and last (inclusive) byte in the stream. */
  readonly start: number;
  readonly end: number;
};

/** A manifest an origin pulled through from its upstream registry (and now holds). */
export type PulledManifest = {
  readonly digest: string;
  /** The upstream's media type of the manifest ('' when it named none). */
  readonly mediaType: string;
  readonly size: number;
  readonly bytes: Buffer;
  /** Where the origin recorded it (`BlobUploaded` + `BlobPlaced`). */
  readonly position?: Position;
};

export type Committed = {
  readonly digest: string;
  readonly size: number;
  readonly position: Position;
};

/**
 * The typed client of one origin's internal API (`/internal/…`), streaming both ways.
 * Errors are `ShoalError`s carrying the origin's code; `SERVICE_UNAVAILABLE` when it cannot
 * be reached. `createBlobAccess` builds the cluster-wide view on top of it.
 */
export interface OriginClient {
  readonly url: string;
  /** Opens a session in `repo`, owned by `by` (else by the caller itself). */
  startUpload(options: { repo: string; by?: Attribution }): Promise<{ id: string }>;
  /**
   * `offset` must be the session's size (else `RANGE_INVALID`); `length` the body's size;
   * `binding` the session's repository and owner (else `BLOB_UPLOAD_UNKNOWN`).
   */
  appendUpload(
    id: string,
    body: RequestBody,
    options?: { offset?: number; length?: number; signal?: AbortSignal; binding?: Binding },
  ): Promise<{ size: number }>;
  uploadStatus(id: string, binding?: Binding): Promise<{ size: number; repo: string }>;
  commitUpload(
    id: string,
    options: {
      digest: string;
      repo?: string;
      by?: Attribution;
      mediaType?: string;
      body?: RequestBody;
      length?: number;
      signal?: AbortSignal;
    },
  ): Promise<Committed>;
  cancelUpload(id: string, binding?: Binding): Promise<void>;
  /**
   * Stores a whole blob. With `replicaOf`, it is a copy between owners: the receiver records
   * only `BlobPlaced` (no `BlobUploaded`, no write-back, no further replication).
   */
  putBlob(
    digest: string,
    body: RequestBody,
    options?: {
      repo?: string;
      mediaType?: string;
      size?: number;
      replicaOf?: string;
      by?: Attribution;
      signal?: AbortSignal;
    },
  ): Promise<{ digest: string; size: number; position?: Position }>;
  /**
   * `local`: only this origin's disk, no fetching from peers or the backend. `repo`: the
   * repository asking, which picks the backend a fill reads from (namespace routing).
   */
  statBlob(
    digest: string,
    options?: { local?: boolean; repo?: string },
  ): Promise<{ size: number } | undefined>;
  getBlob(
    digest: string,
    options?: { range?: ByteRange; local?: boolean; repo?: string; signal?: AbortSignal },
  ): Promise<BlobStream>;
  /**
   * Pull-through: fetches a manifest by tag or digest from the upstream registry `repo`
   * routes to (a read-only `registry` backend), verified, and stores it on this origin.
   * `MANIFEST_UNKNOWN` when `repo` is no pull-through namespace or the upstream lacks it;
   * `STORAGE_UNAVAILABLE` when the upstream cannot be reached.
   */
  pullManifest(repo: string, reference: string): Promise<PulledManifest>;
  /**
   * The digest `tag` points at in the upstream registry `repo` routes to (a `HEAD` there);
   * `{}` when `repo` is no pull-through namespace. `MANIFEST_UNKNOWN` when the upstream lacks
   * the tag; `STORAGE_UNAVAILABLE` when it cannot be reached.
   */
  upstreamDigest(repo: string, tag: string): Promise<{ digest?: string }>;
  /** Drops this origin's copy (the backend and other owners keep theirs). */
  deleteBlob(digest: string): Promise<{ deleted: boolean }>;
  metainfo(digest: string): Promise<Metainfo>;
  ring(digest?: string): Promise<RingInfo>;
  close(): Promise<void>;
}

const query = (params: Record<string, string | number | boolean | undefined>) => {
  const search = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) {
    if (v !== undefined && v !== false) search.set(k, v === true ? '1' : String(v));
  }
  const text = search.toString();
  return text.length > 0 ? `?${text}` : '';
};

const uploadPath = (id: string) => `/internal/uploads/${encodeURIComponent(id)}`;
const blobPath = (digest: string) => `/internal/blobs/${encodeURIComponent(digest)}`;

const positionOf = (response: HttpResponse): Position | undefined => {
  const raw = headerOf(response.headers, positionHeaders.written);
  return raw !== undefined && /^\d+$/.test(raw) ? Number(raw) : undefined;
};

/** Manifests are at most 4 MiB; an answer past this is not one. */
const maxManifestBytes = 16 * 1024 * 1024;

const lengthOf = (response: HttpResponse): number => {
  const length = Number(headerOf(response.headers, 'content-length'));
  if (!Number.isSafeInteger(length)) throw new ShoalError('INTERNAL', 'answer without a length');
  return length;
};

/** The code of an error answer without Problem Details. */
const codeByStatus = (status: number): ErrorCode => {
  if (status === 404) return 'BLOB_UNKNOWN';
  if (status === 416) return 'RANGE_INVALID';
  if (status === 503 || status === 502 || status === 504) return 'SERVICE_UNAVAILABLE';
  if (status >= 400 && status < 500) return 'PARAMETER_INVALID';
  return 'INTERNAL';
};

/**
 * Names the kind of caller (`origin` for a peer origin) so that the origin can tell its
 * egress to peers from that to clients (metrics only; nothing is decided on it).
 */
export const callerHeader = 'shoal-caller';

export const createOriginClient = (
  baseUrl: string,
  options: { timeoutMs?: number; identity?: ClientIdentity; caller?: 'origin' } = {},
): OriginClient => {
  const http = createServiceClient(baseUrl, {
    ...(options.timeoutMs !== undefined && { timeoutMs: options.timeoutMs }),
    ...(options.identity !== undefined && { identity: options.identity }),
    codeByStatus,
    ...(options.caller !== undefined && { headers: { [callerHeader]: options.caller } }),
  });
  const json = async <T>(response: HttpResponse) => readJson<T>(response.body, http.url);

  return {
    url: http.url,

    startUpload: async ({ repo, by }) =>
      json<{ id: string }>(
        await http.call({
          method: 'POST',
          path: '/internal/uploads',
          headers: { 'content-type': 'application/json', ...onBehalfOf(by) },
          body: Buffer.from(JSON.stringify({ repo })),
        }),
      ),

    appendUpload: async (id, body, opts = {}) => {
      const response = await http.call({
        method: 'PATCH',
        path: `${uploadPath(id)}${query({ offset: opts.offset, repo: opts.binding?.repo })}`,
        headers: {
          'content-type': 'application/octet-stream',
          ...(opts.length !== undefined && { 'content-length': opts.length }),
          ...onBehalfOf(opts.binding?.by),
        },
        body: body ?? Buffer.alloc(0),
        ...(opts.signal !== undefined && { signal: opts.signal }),
      });
      const { size } = await json<{ size: number }>(response);
      return { size };
    },

    uploadStatus: async (id, binding) => {
      const { size, repo } = await json<{ size: number; repo: string }>(
        await http.call({
          method: 'GET',
          path: `${uploadPath(id)}${query({ repo: binding?.repo })}`,
          headers: onBehalfOf(binding?.by),
        }),
      );
      return { size, repo };
    },

    commitUpload: async (id, opts) => {
      const response = await http.call({
        method: 'PUT',
        path: `${uploadPath(id)}${query({
          digest: opts.digest,
          repo: opts.repo,
          mediaType: opts.mediaType,
        })}`,
        headers: {
          'content-type': 'application/octet-stream',
          ...(opts.length !== undefined && { 'content-length': opts.length }),
          ...onBehalfOf(opts.by),
        },
        body: opts.body ?? Buffer.alloc(0),
        ...(opts.signal !== undefined && { signal: opts.signal }),
      });
      return json<Committed>(response);
    },

    cancelUpload: async (id, binding) => {
      const response = await http.call({
        method: 'DELETE',
        path: `${uploadPath(id)}${query({ repo: binding?.repo })}`,
        headers: onBehalfOf(binding?.by),
      });
      discard(response.body);
    },

    putBlob: async (digest, body, opts = {}) => {
      const response = await http.call({
        method: 'PUT',
        path: `${blobPath(digest)}${query({
          repo: opts.repo,
          mediaType: opts.mediaType,
          replicaOf: opts.replicaOf,
        })}`,
        headers: {
          'content-type': 'application/octet-stream',
          ...(opts.size !== undefined && { 'content-length': opts.size }),
          ...onBehalfOf(opts.by),
        },
        body: body ?? Buffer.alloc(0),
        ...(opts.signal !== undefined && { signal: opts.signal }),
      });
      const result = await json<{ digest: string; size: number; position?: Position }>(response);
      const position = result.position ?? positionOf(response);
      return { digest: result.digest, size: result.size, ...(position && { position }) };
    },

    statBlob: async (digest, opts = {}) => {
      try {
        const response = await http.call({
          method: 'HEAD',
          path: `${blobPath(digest)}${query({ local: opts.local, repo: opts.repo })}`,
        });
        discard(response.body);
        return { size: lengthOf(response) };
      } catch (error) {
        if (isShoalError(error, 'BLOB_UNKNOWN')) return undefined;
        throw error;
      }
    },

    getBlob: async (digest, opts = {}) => {
      const range = opts.range;
      const response = await http.call({
        method: 'GET',
        path: `${blobPath(digest)}${query({ local: opts.local, repo: opts.repo })}`,
        headers: {
          ...(range !== undefined && { range: `bytes=${range.start}-${range.end ?? ''}` }),
        },
        ...(opts.signal !== undefined && { signal: opts.signal }),
      });
      let served: { start: number; end: number; size: number };
      if (response.status === 206) {
        const parsed = parseServedRange(headerOf(response.headers, 'content-range'));
        if (parsed?.size === undefined) {
          drop(response.body);
          throw new ShoalError('INTERNAL', 'partial answer without a valid Content-Range');
        }
        served = { start: parsed.start, end: parsed.end, size: parsed.size };
      } else {
        const size = lengthOf(response);
        served = { start: 0, end: size - 1, size };
      }
      const length = served.end - served.start + 1;
      // A body that ends short or breaks fails the stream: never taken for the whole.
      const stream = sliceBody(response.body, {
        skip: 0,
        length,
        bodyLength: length,
        fail: (why, cause) =>
          new ShoalError('SERVICE_UNAVAILABLE', `GET ${http.url}${blobPath(digest)}: ${why}`, {
            cause,
          }),
      });
      return { stream, ...served };
    },

    pullManifest: async (repo, reference) => {
      const response = await http.call({
        method: 'POST',
        path: `/internal/pull-through/manifests${query({ repo, reference })}`,
        body: Buffer.alloc(0),
      });
      const { bytes, truncated } = await readBody(response.body, maxManifestBytes);
      if (truncated) throw new ShoalError('INTERNAL', 'pulled manifest answered too many bytes');
      const digest = headerOf(response.headers, 'docker-content-digest');
      if (digest === undefined) {
        throw new ShoalError('INTERNAL', 'pulled manifest answered without its digest');
      }
      const type = (headerOf(response.headers, 'content-type') ?? '').split(';')[0]?.trim() ?? '';
      const position = positionOf(response);
      return {
        digest,
        mediaType: type === 'application/octet-stream' ? '' : type,
        size: bytes.length,
        bytes,
        ...(position !== undefined && { position }),
      };
    },

    upstreamDigest: async (repo, tag) =>
      json<{ digest?: string }>(
        await http.call({
          method: 'GET',
          path: `/internal/pull-through/tags${query({ repo, tag })}`,
        }),
      ),

    deleteBlob: async (digest) =>
      json<{ deleted: boolean }>(await http.call({ method: 'DELETE', path: blobPath(digest) })),

    metainfo: async (digest) =>
      json<Metainfo>(await http.call({ method: 'GET', path: `${blobPath(digest)}/metainfo` })),

    ring: async (digest) =>
      json<RingInfo>(
        await http.call({ method: 'GET', path: `/internal/ring${query({ digest })}` }),
      ),

    close: () => http.close(),
  };
};

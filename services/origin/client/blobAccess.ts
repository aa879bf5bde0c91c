import type { Readable } from 'node:stream';
import type { Digest, Position, RepoName, Tag } from '../../../domain';
import type { Attribution } from '../../shared/events';

/**
 * Whom an upload session belongs to: the repository it was started in and the user it was
 * started for. Every later operation names both; a session that does not match is unknown
 * to the caller (`BLOB_UPLOAD_UNKNOWN`), so a session started in `a/` by alice cannot be
 * appended to, committed or cancelled through `b/` or by bob.
 */
export type UploadBinding = { readonly repo: RepoName; readonly by?: Attribution };

/**
 * How the proxy (and later the tracker and agents) reach blob bytes in a cluster: upload
 * sessions that land on an origin, and reads that try the digest's owners on the rendezvous
 * ring in order, then the storage backend. Implemented over the origins' internal HTTP API;
 * `shoal dev` may wire it in-process. Errors are `ShoalError`s: `BLOB_UNKNOWN`,
 * `BLOB_UPLOAD_UNKNOWN`, `BLOB_UPLOAD_INVALID`, `RANGE_INVALID`, `DIGEST_INVALID`,
 * `SIZE_INVALID`, `SERVICE_UNAVAILABLE` (retriable).
 */
export interface BlobAccess {
  /**
   * Opens an upload session in `repo` for `by` (its owner; the events of its commit record
   * them). The id is opaque, URL-safe, and names the origin holding it.
   */
  startUpload(options: UploadBinding): Promise<{ id: string }>;

  /**
   * Appends bytes to a session. `offset`, when given, must equal the bytes received so far
   * (else `RANGE_INVALID`, nothing written). Streams: never holds the chunk in memory.
   * Resolves with the session's new size.
   */
  appendUpload(
    id: string,
    body: Readable,
    options?: {
      offset?: number;
      /** The chunk's length when known (Content-Length); lets the origin check it. */
      length?: number;
      binding?: UploadBinding;
    },
  ): Promise<{ size: number }>;

  /** Bytes received so far; `BLOB_UPLOAD_UNKNOWN` for an unknown or finished session. */
  uploadStatus(id: string, binding?: UploadBinding): Promise<{ size: number }>;

  /**
   * Finishes a session, optionally with a last chunk: verifies the digest while streaming,
   * commits the blob atomically on the owners, appends `BlobUploaded`/`BlobPlaced`.
   * On a digest mismatch fails with `DIGEST_INVALID` and nothing becomes visible. `repo` (and
   * `by`) must be the session's.
   */
  commitUpload(
    id: string,
    options: {
      digest: Digest;
      repo: RepoName;
      by?: Attribution;
      mediaType?: string;
      body?: Readable;
      /** The last chunk's length when known (Content-Length). */
      length?: number;
    },
  ): Promise<{ digest: Digest; size: number; position: Position }>;

  /** Abandons a session and frees its space. */
  cancelUpload(id: string, binding?: UploadBinding): Promise<void>;

  /** Stores a whole blob in one call (manifests, replication). Same checks as a commit. */
  put(
    digest: Digest,
    body: Readable | Buffer,
    options: { repo: RepoName; mediaType?: string; size?: number; by?: Attribution },
  ): Promise<{ size: number; position: Position }>;

  /**
   * Size of a blob, or undefined when no owner and no backend has it. `repo`, the repository
   * asking, picks the backend an owner that lacks the blob fetches it from.
   */
  stat(digest: Digest, options?: { repo?: RepoName }): Promise<{ size: number } | undefined>;

  /**
   * Streams a blob, whole or a byte range (`end` inclusive, as in HTTP; an `end` past the
   * blob is clamped). `BLOB_UNKNOWN` when absent, `RANGE_INVALID` when the range is not
   * satisfiable. `size` is the whole blob's size; `start`/`end` the bytes in the stream
   * (`end` = `start - 1` for an empty blob), ready for `Content-Range`.
   */
  get(
    digest: Digest,
    range?: { start: number; end?: number },
    options?: { repo?: RepoName },
  ): Promise<{ stream: Readable; size: number; start: number; end: number }>;

  /**
   * Pull-through of a manifest the cluster lacks: an origin fetches it by tag or digest from
   * the upstream registry `repo` routes to (a read-only `registry` backend), verifies it,
   * stores it as a blob of `repo` and answers its bytes. `MANIFEST_UNKNOWN` when `repo` is no
   * pull-through namespace or the upstream has no such manifest; `STORAGE_UNAVAILABLE` (503)
   * when the upstream cannot be reached. Nothing else is recorded: linking the manifest's
   * references and the manifest itself to the repository is the caller's (the proxy's).
   */
  pullManifest(
    repo: RepoName,
    reference: string,
  ): Promise<{ digest: Digest; mediaType: string; size: number; bytes: Buffer }>;

  /**
   * The digest `tag` points at now in the upstream registry `repo` routes to (an origin asks
   * with a `HEAD` of the tag; nothing is fetched or stored): how the proxy sees that a tag it
   * pulled through moved upstream. Undefined when `repo` is no pull-through namespace;
   * `MANIFEST_UNKNOWN` when the upstream has no such tag; `STORAGE_UNAVAILABLE` (503) when it
   * cannot be reached.
   */
  upstreamDigest(repo: RepoName, tag: Tag): Promise<Digest | undefined>;
}

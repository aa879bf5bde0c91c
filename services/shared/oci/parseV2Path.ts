import type { Digest, RepoName } from '../../../domain';
import { ShoalError, orThrow, parseDigest, parseRepoName } from '../../../domain';

/**
 * A request path under `/v2/`, split into the repository and what it addresses: the whole
 * OCI Distribution API, as the proxy serves it; the agent serves the read-only part.
 */
export type V2Path =
  | { kind: 'ping' }
  | { kind: 'catalog' }
  | { kind: 'uploads'; repo: RepoName }
  | { kind: 'upload'; repo: RepoName; id: string }
  | { kind: 'blob'; repo: RepoName; digest: string }
  | { kind: 'manifest'; repo: RepoName; reference: string }
  | { kind: 'referrers'; repo: RepoName; digest: string }
  | { kind: 'tags'; repo: RepoName };

// Repository names contain slashes and may contain `blobs`, `manifests` or `tags` components;
// what follows them never contains a slash, so each shape is anchored at the end of the path
// and the (greedy) name takes the rest.

/** `NAME_UNKNOWN` for a path under `/v2/` that names no endpoint (this service serves). */
export const unknownV2Path = (path: string) =>
  new ShoalError('NAME_UNKNOWN', `no OCI endpoint at /v2/${path.slice(0, 120)}`, {
    detail: { path: path.slice(0, 120) },
  });

/**
 * Parses what follows `/v2/` (already percent-decoded). `method` tells `POST <name>/blobs/uploads/`
 * (start an upload) from the other shapes. Bad repository names fail with `NAME_INVALID`;
 * references and digests are left to the handlers, which know what each method allows.
 */
export const parseV2Path = (path: string, method: string): V2Path => {
  if (path === '' || path === '/') return { kind: 'ping' };
  if (path === '_catalog') return { kind: 'catalog' };
  const repo = (name: string) => orThrow(parseRepoName(name));
  let m: RegExpExecArray | null;
  if ((m = /^(.+)\/tags\/list$/.exec(path))) return { kind: 'tags', repo: repo(m[1] as string) };
  if ((m = /^(.+)\/manifests\/([^/]+)$/.exec(path))) {
    return { kind: 'manifest', repo: repo(m[1] as string), reference: m[2] as string };
  }
  if ((m = /^(.+)\/referrers\/([^/]+)$/.exec(path))) {
    return { kind: 'referrers', repo: repo(m[1] as string), digest: m[2] as string };
  }
  if (method === 'POST' && (m = /^(.+)\/blobs\/uploads\/?$/.exec(path))) {
    return { kind: 'uploads', repo: repo(m[1] as string) };
  }
  if ((m = /^(.+)\/blobs\/uploads\/([^/]+)$/.exec(path))) {
    return { kind: 'upload', repo: repo(m[1] as string), id: m[2] as string };
  }
  if ((m = /^(.+)\/blobs\/([^/]+)$/.exec(path))) {
    return { kind: 'blob', repo: repo(m[1] as string), digest: m[2] as string };
  }
  throw unknownV2Path(path);
};

/** Paths for `Location` headers. */
export const v2Paths = {
  blob: (repo: string, digest: string) => `/v2/${repo}/blobs/${digest}`,
  upload: (repo: string, id: string) => `/v2/${repo}/blobs/uploads/${id}`,
  manifest: (repo: string, reference: string) => `/v2/${repo}/manifests/${reference}`,
  tags: (repo: string) => `/v2/${repo}/tags/list`,
  catalog: () => '/v2/_catalog',
} as const;

/** A reference in a URL is a digest when it has a colon: tags never do. */
export const isDigestReference = (reference: string): boolean => reference.includes(':');

/** Parses a digest from a URL or query; `DIGEST_INVALID` otherwise. */
export const digestParam = (value: string): Digest => orThrow(parseDigest(value));

/** The `n` of a paged list (`?n=<count>`); absent or empty gives undefined. */
export const parsePageSize = (value: string | undefined): number | undefined => {
  if (value === undefined || value === '') return undefined;
  if (!/^\d{1,9}$/.test(value)) {
    throw new ShoalError('PARAMETER_INVALID', 'n must be a non-negative integer');
  }
  return Number(value);
};

import type { BlobStore, Digest, RepoName } from '../../domain';
import { ShoalError, isShoalError, orThrow, parseTag, truncate } from '../../domain';
import type { Logger } from '../shared/logger';
import type { Backend, BackendRouter } from './backendRouter';

/**
 * What a read-only backend that fronts another OCI registry offers besides blobs (the
 * `registry` backend's repository view, `RepositoryRegistryBlobStore`): a manifest by tag or
 * digest, its digest verified, and a tag's digest from a `HEAD`. Backends without it are no
 * pull-through source of manifests.
 */
export type ManifestSource = {
  fetchManifest(
    reference: string,
  ): Promise<{ readonly bytes: Buffer; readonly mediaType: string; readonly digest: Digest }>;
  headManifest(tag: string): Promise<Digest>;
};

const manifestSourceOf = (store: BlobStore): ManifestSource | undefined =>
  typeof (store as Partial<ManifestSource>).fetchManifest === 'function'
    ? (store as BlobStore & ManifestSource)
    : undefined;

/** Upstream failures a client may see as they are; anything else is the upstream's fault. */
const passedOn = new Set(['MANIFEST_UNKNOWN', 'DENIED', 'STORAGE_UNAVAILABLE']);

/** The backend `repo` routes to and its manifest source, when it is a pull-through one. */
export const pullThroughSourceOf = (
  backends: BackendRouter,
  repo: RepoName,
): { backend: Backend; source: ManifestSource } | undefined => {
  const backend = backends.forRepo(repo);
  const source = backend.readOnly ? manifestSourceOf(backend.store) : undefined;
  return source === undefined ? undefined : { backend, source };
};

/**
 * Runs a request to a pull-through upstream: the failures a client may see pass as they are
 * (`MANIFEST_UNKNOWN`, `DENIED`, `STORAGE_UNAVAILABLE`); anything else the upstream gets wrong
 * is logged and becomes a `STORAGE_UNAVAILABLE` that names the cause.
 */
export const askUpstream = async <T>(
  logger: Logger,
  what: { repo: RepoName; reference: string; backend: string; action: string },
  request: () => Promise<T>,
): Promise<T> => {
  try {
    return await request();
  } catch (error) {
    if (isShoalError(error) && passedOn.has(error.code)) throw error;
    const { repo, backend } = what;
    const reference = truncate(what.reference);
    logger.error(
      { err: error, repo, reference, backend },
      `cannot ${what.action} from the upstream registry`,
    );
    throw new ShoalError(
      'STORAGE_UNAVAILABLE',
      `cannot ${what.action} ${reference} of ${repo} through backend "${backend}": ` +
        `${error instanceof Error ? error.message : String(error)}`,
      { cause: error, retriable: false, detail: { name: repo, backend } },
    );
  }
};

/**
 * The digest `tag` points at in the upstream registry `repo` routes to (a `HEAD` of the tag):
 * what the proxy compares with Shoal's tag to see that it moved upstream. Undefined when
 * `repo` is no pull-through namespace; `MANIFEST_UNKNOWN` when the upstream has no such tag;
 * `STORAGE_UNAVAILABLE` when it cannot be reached.
 */
export const upstreamTagDigest = async (
  backends: BackendRouter,
  logger: Logger,
  repo: RepoName,
  tag: string,
): Promise<Digest | undefined> => {
  orThrow(parseTag(tag));
  const found = pullThroughSourceOf(backends, repo);
  if (found === undefined) return undefined;
  const { backend, source } = found;
  return askUpstream(
    logger,
    { repo, reference: tag, backend: backend.name, action: 'check a tag' },
    () => source.headManifest(tag),
  );
};

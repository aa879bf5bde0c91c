import { createHash } from 'node:crypto';
import type { ByteRange, Digest, ObjectRead, ObjectStat } from '../../../domain';
import {
  ShoalError,
  digestAlgorithm,
  digestOfObjectName,
  manifestAccept,
  orThrow,
  parseDigest,
  parseObjectName,
  parseRepoName,
  parseTag,
  resolveRange,
  truncate,
} from '../../../domain';
import type { HttpResponse } from '../../../kit/http/transport';
import {
  contentLengthOf,
  describeHttpError,
  discard,
  drop,
  headerOf,
  readBody,
  sliceBody,
} from '../../../kit/http/transport';
import { parseServedRange } from '../../../kit/http/range';
import { mediaTypeOf, relay, verifying } from './bodies';
import type {
  RegistryBlobStore,
  RegistryBlobStoreConfig,
  RegistryBlobStoreDeps,
  RepositoryRegistryBlobStore,
  UpstreamManifest,
} from './config';
import { connectUpstream } from './upstream';

/** Registries cap manifests at 4 MiB; the CNCF registry refuses larger ones. */
const maxManifestBytes = 4 * 1024 * 1024;

/**
 * A read-only BlobStore that pulls through from another OCI registry (the CNCF registry,
 * Harbor, Docker Hub, a Shoal proxy): `forRepository(repo)` reads the object named by
 * {@link blobObjectName} from `GET /v2/<repo less stripPrefix>/blobs/<digest>`, and, when the
 * upstream has no such blob, from `/v2/<repo>/manifests/<digest>` (a manifest pulled by digest
 * is an object the origin stores too). Names that are no blob object name are missing.
 * The unscoped store refuses reads with `PARAMETER_INVALID`: a registry addresses blobs by
 * repository. `put` and `delete` fail with `UNSUPPORTED`, and so does `list` (registries
 * list repositories and tags, not blobs).
 *
 * **Verification.** A whole read hashes the bytes as they stream and holds back the last
 * chunk until the hash is checked: when the upstream sends bytes that are not the digest's
 * (or too few, or too many), the stream fails with `DIGEST_INVALID` before its last byte, so a
 * caller that pipes it into an atomic `put` stores nothing. A ranged read cannot be verified
 * (the digest covers the whole object): its bytes pass through as the upstream sent them.
 * A ranged read costs a `HEAD` (the size, for `RANGE_INVALID`) and a `GET` with `Range`; an
 * upstream that ignores `Range` (manifests) is sliced here.
 *
 * **Auth, redirects, retries, errors**: see {@link connectUpstream}; a token is asked for
 * `repository:<repo>:pull`. Every message names the backend, the upstream and the repository.
 */
export const createRegistryBlobStore = (
  config: RegistryBlobStoreConfig,
  deps: RegistryBlobStoreDeps = {},
): RegistryBlobStore => {
  const upstream = connectUpstream(config, deps);
  const { name, label, call } = upstream;
  const stripPrefix = config.stripPrefix.replace(/\/+$/, '');

  const unscoped = () =>
    Promise.reject(
      new ShoalError(
        'PARAMETER_INVALID',
        `${label}: the registry backend needs a repository (use forRepository)`,
        { detail: { backend: name } },
      ),
    );

  const unsupported = (what: string) =>
    Promise.reject(
      new ShoalError('UNSUPPORTED', `${label} is read-only: it cannot ${what}`, {
        detail: { backend: name },
      }),
    );

  /** An iterable whose first step fails: the port's `list` is not asynchronous itself. */
  const refuseList = (): AsyncIterable<string> => ({
    [Symbol.asyncIterator]: () => ({
      next: () =>
        Promise.reject(
          new ShoalError('UNSUPPORTED', `${label} cannot list its objects (registries list tags)`, {
            detail: { backend: name },
          }),
        ),
    }),
  });

  /** Read-only: puts, deletes and listings are refused (a bad object name as such first). */
  const refuseWrites = {
    put: async (objectName: string): Promise<never> => {
      orThrow(parseObjectName(objectName));
      return unsupported('store objects');
    },
    delete: async (objectName: string): Promise<never> => {
      orThrow(parseObjectName(objectName));
      return unsupported('delete objects');
    },
    list: refuseList,
  };

  /** The digest an object name stands for; names with a prefix (`cluster-a/blobs/…`) too. */
  const digestOf = (objectName: string): Digest | undefined => {
    orThrow(parseObjectName(objectName));
    const parts = objectName.split('/');
    return parts.length < 4 ? undefined : digestOfObjectName(parts.slice(-4).join('/'));
  };

  const upstreamOf = (repo: string): string => {
    let upstream = repo;
    if (stripPrefix !== '') {
      if (!repo.startsWith(`${stripPrefix}/`)) {
        throw new ShoalError(
          'PARAMETER_INVALID',
          `${label}: repository ${truncate(repo)} is not under its stripPrefix "${stripPrefix}/"`,
          { detail: { backend: name, repository: truncate(repo) } },
        );
      }
      upstream = repo.slice(stripPrefix.length + 1);
    }
    return orThrow(parseRepoName(upstream));
  };

  const scoped = (repo: string): RepositoryRegistryBlobStore => {
    let upstream: string;
    try {
      upstream = upstreamOf(repo);
    } catch (error) {
      // A repository this backend cannot serve: every read says why.
      const fail = () => Promise.reject(error);
      return {
        name,
        readOnly: true,
        upstreamRepository: '',
        stat: fail,
        get: fail,
        put: () => unsupported('store objects'),
        delete: () => unsupported('delete objects'),
        list: refuseList,
        fetchManifest: fail,
        headManifest: fail,
      };
    }
    const scope = `repository:${upstream}:pull`;
    const where = `${upstream} (Shoal ${repo})`;
    const pathOf = (kind: Kind, reference: string) => `/v2/${upstream}/${kind}/${reference}`;
    const acceptOf = (kind: Kind): Record<string, string> =>
      kind === 'manifests' ? { accept: manifestAccept } : {};
    const unknown = (objectName: string) =>
      new ShoalError('BLOB_UNKNOWN', `${label}: ${where} has no object ${objectName}`, {
        detail: { name: objectName, backend: name, repository: upstream },
      });

    const sizeOf = (response: HttpResponse, what: string): number => {
      const size = Number(headerOf(response.headers, 'content-length'));
      if (!Number.isSafeInteger(size) || size < 0) {
        drop(response.body);
        throw new ShoalError(
          'STORAGE_UNAVAILABLE',
          `${label}: ${what} in ${where} came without a Content-Length`,
          { retriable: false },
        );
      }
      return size;
    };

    /** Where the upstream keeps a digest (blob, else manifest) and its size. */
    const locate = async (digest: Digest): Promise<{ kind: Kind; size: number } | undefined> => {
      for (const kind of kinds) {
        const response = await call('HEAD', pathOf(kind, digest), {
          scope,
          repo: upstream,
          headers: acceptOf(kind),
          expect: [200, 404],
        });
        discard(response.body);
        if (response.status === 200) return { kind, size: sizeOf(response, digest) };
      }
      return undefined;
    };

    const readWhole = async (objectName: string, digest: Digest): Promise<ObjectRead> => {
      for (const kind of kinds) {
        const response = await call('GET', pathOf(kind, digest), {
          scope,
          repo: upstream,
          headers: acceptOf(kind),
          expect: [200, 404],
        });
        if (response.status === 404) {
          discard(response.body);
          continue;
        }
        const size = sizeOf(response, digest);
        const stream = relay(response.body, verifying(digest, size, `${label}: ${where}`), label);
        return { stream, size, start: 0, end: size - 1 };
      }
      throw unknown(objectName);
    };

    const readRange = async (
      objectName: string,
      digest: Digest,
      range: ByteRange,
    ): Promise<ObjectRead> => {
      const located = await locate(digest);
      if (located === undefined) throw unknown(objectName);
      const { size, kind } = located;
      const { start, end } = orThrow(resolveRange(size, range));
      const response = await call('GET', pathOf(kind, digest), {
        scope,
        repo: upstream,
        headers: { ...acceptOf(kind), range: `bytes=${start}-${end}` },
        expect: [200, 206, 404, 416],
      });
      if (response.status === 404) {
        discard(response.body);
        throw unknown(objectName);
      }
      if (response.status === 416) {
        discard(response.body);
        throw new ShoalError('RANGE_INVALID', `${label}: ${where} refused range ${start}-${end}`, {
          detail: { start, end, size },
        });
      }
      const partial = response.status === 206;
      if (partial) {
        const served = parseServedRange(headerOf(response.headers, 'content-range'));
        if (served === undefined || served.start !== start || served.end !== end) {
          drop(response.body);
          throw new ShoalError(
            'STORAGE_UNAVAILABLE',
            `${label}: ${where} answered range ${start}-${end} of ${digest} with ` +
              `"${headerOf(response.headers, 'content-range') ?? 'no Content-Range'}"`,
            { retriable: false },
          );
        }
      }
      // An upstream that ignores Range (manifests) sends the whole: the range is cut here.
      const stream = sliceBody(response.body, {
        skip: partial ? 0 : start,
        length: end - start + 1,
        bodyLength: contentLengthOf(response.headers),
        fail: (why, cause) =>
          new ShoalError(
            'STORAGE_UNAVAILABLE',
            `${label}: ${where}: range ${start}-${end}: ${why}`,
            {
              cause,
            },
          ),
      });
      return { stream, size, start, end };
    };

    const fetchManifest = async (reference: string): Promise<UpstreamManifest> => {
      const byDigest = reference.includes(':');
      if (byDigest) orThrow(parseDigest(reference));
      else orThrow(parseTag(reference));
      const response = await call('GET', pathOf('manifests', reference), {
        scope,
        repo: upstream,
        headers: { accept: manifestAccept },
        expect: [200, 404],
      });
      if (response.status === 404) {
        discard(response.body);
        throw new ShoalError(
          'MANIFEST_UNKNOWN',
          `${label}: ${where} has no manifest ${truncate(reference)}`,
          { detail: { backend: name, repository: upstream, reference: truncate(reference) } },
        );
      }
      const { bytes: body, truncated } = await readBody(response.body, maxManifestBytes).catch(
        (error: unknown) => {
          throw new ShoalError(
            'STORAGE_UNAVAILABLE',
            `${label}: manifest ${truncate(reference)} of ${where}: ${describeHttpError(error)}`,
            { cause: error },
          );
        },
      );
      if (truncated) {
        throw new ShoalError(
          'MANIFEST_INVALID',
          `${label}: manifest ${truncate(reference)} of ${where} is larger than 4 MiB`,
        );
      }
      const announced = byDigest ? reference : headerOf(response.headers, 'docker-content-digest');
      const expected = announced === undefined ? undefined : parseDigest(announced);
      if (expected !== undefined && !expected.ok) {
        throw new ShoalError(
          'DIGEST_INVALID',
          `${label}: ${where} sent manifest ${truncate(reference)} with the invalid ` +
            `Docker-Content-Digest "${truncate(announced ?? '')}"`,
        );
      }
      const algorithm = expected?.ok ? digestAlgorithm(expected.value) : 'sha256';
      const digest = `${algorithm}:${createHash(algorithm).update(body).digest('hex')}` as Digest;
      if (expected?.ok && expected.value !== digest) {
        throw new ShoalError(
          'DIGEST_INVALID',
          `${label}: manifest ${truncate(reference)} of ${where} hashes to ${digest}, not ` +
            `${expected.value}`,
          { detail: { backend: name, repository: upstream, expected: expected.value, digest } },
        );
      }
      return { bytes: body, mediaType: mediaTypeOf(response.headers, body), digest };
    };

    const headManifest = async (tag: string): Promise<Digest> => {
      orThrow(parseTag(tag));
      const response = await call('HEAD', pathOf('manifests', tag), {
        scope,
        repo: upstream,
        headers: { accept: manifestAccept },
        expect: [200, 404],
      });
      discard(response.body);
      if (response.status === 404) {
        throw new ShoalError('MANIFEST_UNKNOWN', `${label}: ${where} has no manifest ${tag}`, {
          detail: { backend: name, repository: upstream, reference: tag },
        });
      }
      const announced = parseDigest(headerOf(response.headers, 'docker-content-digest') ?? '');
      // The header is optional in the distribution spec: without it, the bytes tell.
      return announced.ok ? announced.value : (await fetchManifest(tag)).digest;
    };

    return {
      name,
      readOnly: true,
      upstreamRepository: upstream,
      stat: async (objectName): Promise<ObjectStat | undefined> => {
        const digest = digestOf(objectName);
        if (digest === undefined) return undefined;
        const located = await locate(digest);
        return located === undefined ? undefined : { size: located.size };
      },
      get: async (objectName, range) => {
        const digest = digestOf(objectName);
        if (digest === undefined) throw unknown(objectName);
        return range === undefined
          ? readWhole(objectName, digest)
          : readRange(objectName, digest, range);
      },
      ...refuseWrites,
      fetchManifest,
      headManifest,
    };
  };

  return {
    name,
    readOnly: true,
    stat: async (objectName) => {
      orThrow(parseObjectName(objectName));
      return unscoped();
    },
    get: async (objectName) => {
      orThrow(parseObjectName(objectName));
      return unscoped();
    },
    ...refuseWrites,
    forRepository: scoped,
    fetchManifest: (repo, reference) => scoped(repo).fetchManifest(reference),
    check: async () => {
      const response = await call('GET', '/v2/', { scope: '', expect: [200, 404] });
      discard(response.body);
      if (response.status === 404) {
        throw new ShoalError(
          'CONFIG_INVALID',
          `${label}: GET /v2/ answered 404: the url is not an OCI registry`,
        );
      }
    },
    close: upstream.close,
  };
};

type Kind = 'blobs' | 'manifests';
/** Blobs first; a manifest by digest is the fallback (registries keep them apart). */
const kinds: readonly Kind[] = ['blobs', 'manifests'];

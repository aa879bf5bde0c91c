import { createHash } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import type { Digest, RepoName } from '../../domain';
import {
  ShoalError,
  isShoalError,
  manifestAccept,
  orThrow,
  parseDigest,
  parseTag,
} from '../../domain';
import type { TagApi } from '../build-index/client/tagApi';
import { createProxyClient, mediaTypeOf } from '../proxy/client/proxyClient';
import type { ClientIdentity } from '../shared/security/clientIdentity';
import { createManifestCache } from '../shared/oci/manifestCache';
import type { BlobFetcher } from './blobFetcher';

export type Manifest = {
  readonly digest: Digest;
  readonly mediaType: string;
  readonly bytes: Buffer;
};

const sha256 = (bytes: Buffer) => `sha256:${createHash('sha256').update(bytes).digest('hex')}`;

/** Memory for manifests read recently (content addressed, least recently used dropped). */
const defaultManifestCacheBytes = 64 * 1024 * 1024;

/** (repository, digest) pairs the proxy confirmed, kept to spare it a request per pull. */
const maxLinksKept = 10_000;

/**
 * The agent's read-only OCI Distribution API: tags resolved through build-index on every
 * request (never cached, so a moved tag is never stale), manifests by digest (immutable, so
 * cached) from the proxy — or, without one, through the swarm like any blob — and always
 * checked against their digest.
 */
export const createAgentDistribution = (deps: {
  tags: TagApi | undefined;
  proxyUrl: string;
  blobs: BlobFetcher;
  timeoutMs?: number;
  manifestCacheBytes?: number;
  /** The agent's identity to the proxy. */
  identity?: ClientIdentity;
}) => {
  const manifests = createManifestCache<Manifest>(
    deps.manifestCacheBytes ?? defaultManifestCacheBytes,
  );
  // The proxy is a Shoal service: its client (on the kit's transport) gives the timeouts,
  // and a proxy it cannot reach is SERVICE_UNAVAILABLE.
  const proxy =
    deps.proxyUrl === ''
      ? undefined
      : createProxyClient(deps.proxyUrl, {
          timeoutMs: deps.timeoutMs ?? 30_000,
          ...(deps.identity !== undefined && { identity: deps.identity }),
        });

  // Content is addressed by digest alone here; a repository's access must not reach another's
  // blobs by naming their digests. With access required, the proxy (which knows what each
  // repository holds) confirms each (repository, digest) once, asked with the caller's token.
  const links = new Map<string, true>();
  const linked = async (
    kind: 'blobs' | 'manifests',
    repo: RepoName,
    digest: Digest,
    authorization: string | undefined,
  ): Promise<void> => {
    const key = `${kind} ${repo}@${digest}`;
    if (links.has(key)) return;
    if (proxy === undefined) {
      throw new ShoalError('UNSUPPORTED', 'access checks need proxy.url: the proxy knows links');
    }
    const response = await proxy.request({
      method: 'HEAD',
      path: `/v2/${repo}/${kind}/${digest}`,
      headers: {
        ...(kind === 'manifests' && { accept: manifestAccept }),
        ...(authorization !== undefined && { authorization }),
      },
    });
    response.body.resume();
    if (response.status === 404) {
      throw new ShoalError(
        kind === 'blobs' ? 'BLOB_UNKNOWN' : 'MANIFEST_UNKNOWN',
        `${digest} is not in ${repo}`,
        { detail: { name: repo, digest } },
      );
    }
    if (response.status === 401 || response.status === 403) {
      throw new ShoalError('DENIED', `the proxy refused ${repo}@${digest}`);
    }
    if (response.status < 200 || response.status >= 300) {
      throw new ShoalError('SERVICE_UNAVAILABLE', `proxy answered ${response.status}`);
    }
    if (links.size >= maxLinksKept) links.delete(links.keys().next().value as string);
    links.set(key, true);
  };

  const tagApi = (): TagApi => {
    if (deps.tags === undefined) {
      throw new ShoalError('UNSUPPORTED', 'this agent has no build-index: pull by digest');
    }
    return deps.tags;
  };

  const fromSwarm = async (digest: Digest): Promise<Manifest> => {
    const blob = await deps.blobs.fetch(digest).catch((error: unknown) => {
      if (isShoalError(error, 'BLOB_UNKNOWN')) {
        throw new ShoalError('MANIFEST_UNKNOWN', `manifest ${digest} is unknown`);
      }
      throw error;
    });
    try {
      const bytes = await readFile(blob.path);
      return { digest, bytes, mediaType: mediaTypeOf(bytes) };
    } finally {
      blob.release();
    }
  };

  /** `authorization`: the caller's, when access is required (the proxy checks it too). */
  const manifestByDigest = async (
    repo: RepoName,
    digest: Digest,
    authorization?: string,
  ): Promise<Manifest> => {
    const cached = manifests.get(digest);
    if (cached !== undefined) return cached;
    const manifest =
      proxy === undefined
        ? await fromSwarm(digest)
        : { digest, ...(await proxy.manifest(repo, digest, authorization)) };
    if (sha256(manifest.bytes) !== digest) {
      throw new ShoalError('MANIFEST_INVALID', `manifest bytes do not match ${digest}`);
    }
    manifests.set(digest, manifest);
    return manifest;
  };

  return {
    /**
     * A manifest by tag (resolved now) or digest. With `check`, the proxy confirms (once) that
     * the repository holds it, asked with the caller's `authorization`.
     */
    manifest: async (
      repo: RepoName,
      reference: string,
      check?: { authorization?: string },
    ): Promise<Manifest> => {
      const byDigest = parseDigest(reference);
      const digest = byDigest.ok
        ? byDigest.value
        : orThrow(
            parseDigest((await tagApi().get({ repo, tag: orThrow(parseTag(reference)) })).digest),
          );
      if (check !== undefined) await linked('manifests', repo, digest, check.authorization);
      return manifestByDigest(repo, digest, check?.authorization);
    },
    /** Refuses a blob the repository does not hold (confirmed by the proxy, see `linked`). */
    checkBlob: (repo: RepoName, digest: Digest, authorization?: string) =>
      linked('blobs', repo, digest, authorization),
    tags: (repo: RepoName, paging: { n?: number; last?: string }) => tagApi().list(repo, paging),
    catalog: (paging: { n?: number; last?: string }) => tagApi().catalog(paging),
    /** Closes the connections to the proxy. */
    close: async (): Promise<void> => {
      await proxy?.close();
    },
  };
};

export type AgentDistribution = ReturnType<typeof createAgentDistribution>;

import { createHash } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import type { Digest, RepoName } from '../../domain';
import { ShoalError, isShoalError, orThrow, parseDigest, parseTag } from '../../domain';
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

  const manifestByDigest = async (repo: RepoName, digest: Digest): Promise<Manifest> => {
    const cached = manifests.get(digest);
    if (cached !== undefined) return cached;
    const manifest =
      proxy === undefined
        ? await fromSwarm(digest)
        : { digest, ...(await proxy.manifest(repo, digest)) };
    if (sha256(manifest.bytes) !== digest) {
      throw new ShoalError('MANIFEST_INVALID', `manifest bytes do not match ${digest}`);
    }
    manifests.set(digest, manifest);
    return manifest;
  };

  return {
    /** A manifest by tag (resolved now) or digest. */
    manifest: async (repo: RepoName, reference: string): Promise<Manifest> => {
      const byDigest = parseDigest(reference);
      if (byDigest.ok) return manifestByDigest(repo, byDigest.value);
      const tag = orThrow(parseTag(reference));
      const view = await tagApi().get({ repo, tag });
      return manifestByDigest(repo, orThrow(parseDigest(view.digest)));
    },
    tags: (repo: RepoName, paging: { n?: number; last?: string }) => tagApi().list(repo, paging),
    catalog: (paging: { n?: number; last?: string }) => tagApi().catalog(paging),
    /** Closes the connections to the proxy. */
    close: async (): Promise<void> => {
      await proxy?.close();
    },
  };
};

export type AgentDistribution = ReturnType<typeof createAgentDistribution>;

import { createHash } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import type { Digest, RepoName } from '../../domain';
import { ShoalError, isShoalError, orThrow, parseDigest, parseTag } from '../../domain';
import type { TagApi } from '../build-index/client/tagApi';
import { createManifestCache } from '../shared/oci/manifestCache';
import type { BlobFetcher } from './blobFetcher';

export type Manifest = {
  readonly digest: Digest;
  readonly mediaType: string;
  readonly bytes: Buffer;
};

const manifestTypes = [
  'application/vnd.oci.image.index.v1+json',
  'application/vnd.oci.image.manifest.v1+json',
  'application/vnd.docker.distribution.manifest.list.v2+json',
  'application/vnd.docker.distribution.manifest.v2+json',
  'application/vnd.oci.artifact.manifest.v1+json',
];

const sha256 = (bytes: Buffer) => `sha256:${createHash('sha256').update(bytes).digest('hex')}`;

/** A manifest's media type from its JSON (`mediaType`), for manifests read as plain blobs. */
const mediaTypeOf = (bytes: Buffer): string => {
  try {
    const parsed = JSON.parse(bytes.toString('utf8')) as {
      mediaType?: unknown;
      manifests?: unknown;
    };
    if (typeof parsed.mediaType === 'string') return parsed.mediaType;
    return Array.isArray(parsed.manifests) ? manifestTypes[0]! : manifestTypes[1]!;
  } catch {
    throw new ShoalError('MANIFEST_INVALID', 'manifest is not JSON');
  }
};

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
}) => {
  const manifests = createManifestCache<Manifest>(
    deps.manifestCacheBytes ?? defaultManifestCacheBytes,
  );
  const proxy = deps.proxyUrl.replace(/\/+$/, '');

  const tagApi = (): TagApi => {
    if (deps.tags === undefined) {
      throw new ShoalError('UNSUPPORTED', 'this agent has no build-index: pull by digest');
    }
    return deps.tags;
  };

  const fromProxy = async (repo: RepoName, digest: Digest): Promise<Manifest> => {
    let response: Response;
    try {
      response = await fetch(`${proxy}/v2/${repo}/manifests/${digest}`, {
        headers: { accept: manifestTypes.join(', ') },
        signal: AbortSignal.timeout(deps.timeoutMs ?? 30_000),
      });
    } catch (error) {
      throw new ShoalError('SERVICE_UNAVAILABLE', `cannot reach the proxy: ${String(error)}`);
    }
    const bytes = Buffer.from(await response.arrayBuffer());
    if (response.status === 404) {
      throw new ShoalError('MANIFEST_UNKNOWN', `manifest ${digest} is not in ${repo}`);
    }
    if (!response.ok) {
      throw new ShoalError('SERVICE_UNAVAILABLE', `proxy answered ${response.status}`);
    }
    return {
      digest,
      bytes,
      mediaType: response.headers.get('content-type')?.split(';')[0]?.trim() || mediaTypeOf(bytes),
    };
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
    const manifest = proxy === '' ? await fromSwarm(digest) : await fromProxy(repo, digest);
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
  };
};

export type AgentDistribution = ReturnType<typeof createAgentDistribution>;

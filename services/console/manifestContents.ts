import { createHash } from 'node:crypto';
import type { Descriptor, Digest, Manifest } from '../../domain';
import { ShoalError, orThrow, parseDigest, parseManifest } from '../../domain';
import type { ProxyClient } from '../proxy/client/proxyClient';
import { createManifestCache } from '../shared/oci/manifestCache';

/** What a console page shows of an image config: its platform and when it was built. */
export type ImageConfigSummary = {
  readonly platform?: string;
  readonly created?: string;
};

const maxConfigBytes = 1024 * 1024;

const sha256 = (bytes: Buffer) => `sha256:${createHash('sha256').update(bytes).digest('hex')}`;

/** `os/architecture[/variant]` from a descriptor's platform or an image config. */
export const platformString = (value: unknown): string | undefined => {
  if (typeof value !== 'object' || value === null) return undefined;
  const { os, architecture, variant } = value as Record<string, unknown>;
  if (typeof os !== 'string' || typeof architecture !== 'string') return undefined;
  return [os, architecture, ...(typeof variant === 'string' ? [variant] : [])].join('/');
};

/**
 * Manifest contents for the console (config, layers, index children, platforms), which the
 * log does not hold: read from the proxy through its client, checked against their digests,
 * and kept by digest (content never changes) in memory bounded by `cacheBytes`. Without a
 * proxy, `manifest` fails with `UNSUPPORTED` and `platforms` knows none.
 */
export const createManifestContents = (deps: {
  proxy: ProxyClient | undefined;
  cacheBytes?: number;
}) => {
  const { proxy } = deps;
  const cache = createManifestCache<{ bytes: Buffer; manifest: Manifest }>(
    deps.cacheBytes ?? 16 * 1024 * 1024,
  );
  const configs = new Map<string, ImageConfigSummary>();

  const manifest = async (repo: string, digest: Digest): Promise<Manifest> => {
    const cached = cache.get(digest);
    if (cached !== undefined) return cached.manifest;
    if (proxy === undefined) {
      throw new ShoalError('UNSUPPORTED', 'the console has no proxy URL to read manifests from');
    }
    const { bytes, mediaType } = await proxy.manifest(repo, digest);
    if (sha256(bytes) !== digest) {
      throw new ShoalError('MANIFEST_INVALID', `manifest bytes do not match ${digest}`);
    }
    const parsed = orThrow(parseManifest(bytes.toString('utf8'), mediaType));
    cache.set(digest, { bytes, manifest: parsed });
    return parsed;
  };

  const config = async (repo: string, descriptor: Descriptor): Promise<ImageConfigSummary> => {
    const known = configs.get(descriptor.digest);
    if (known !== undefined) return known;
    if (proxy === undefined || descriptor.size > maxConfigBytes) return {};
    const bytes = await proxy.smallBlob(repo, descriptor.digest, maxConfigBytes);
    if (sha256(bytes) !== descriptor.digest) return {};
    let summary: ImageConfigSummary = {};
    try {
      const parsed = JSON.parse(bytes.toString('utf8')) as Record<string, unknown>;
      const platform = platformString(parsed);
      summary = {
        ...(platform !== undefined && { platform }),
        ...(typeof parsed.created === 'string' && { created: parsed.created }),
      };
    } catch {
      // Not JSON (an artifact's config): no platform to show.
    }
    configs.set(descriptor.digest, summary);
    // Bounded like the manifests: configs are small, keep the most recent few thousand.
    for (const oldest of configs.keys()) {
      if (configs.size <= 4096) break;
      configs.delete(oldest);
    }
    return summary;
  };

  return {
    available: proxy !== undefined,
    manifest,
    config,

    /**
     * The platforms of what a digest names: each child's of an index, the config's of an
     * image; undefined when they cannot be read (no proxy, proxy down, not an image).
     */
    async platforms(repo: string, digest: string): Promise<string[] | undefined> {
      if (proxy === undefined) return undefined;
      try {
        const parsed = await manifest(repo, orThrow(parseDigest(digest)));
        if (parsed.kind === 'index') {
          return parsed.manifests.map((child) => platformString(child.platform) ?? 'unknown');
        }
        if (parsed.config === undefined) return undefined;
        const { platform } = await config(repo, parsed.config);
        return platform === undefined ? undefined : [platform];
      } catch {
        return undefined;
      }
    },
  };
};

export type ManifestContents = ReturnType<typeof createManifestContents>;

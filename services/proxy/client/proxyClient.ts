import type { Digest } from '../../../domain';
import { ShoalError, manifestAccept, mediaTypes } from '../../../domain';
import { headerOf, readBody } from '../../../kit/http/transport';
import { createServiceClient } from '../../shared/httpClient';
import type { ClientIdentity } from '../../shared/security/clientIdentity';

/** Largest manifest read from the proxy: the most a proxy may be configured to accept. */
export const maxManifestBytes = 64 * 1024 * 1024;

/** A manifest's media type from its JSON (`mediaType`), for manifests read as plain blobs. */
export const mediaTypeOf = (bytes: Buffer): string => {
  try {
    const parsed = JSON.parse(bytes.toString('utf8')) as {
      mediaType?: unknown;
      manifests?: unknown;
    };
    if (typeof parsed.mediaType === 'string') return parsed.mediaType;
    return Array.isArray(parsed.manifests) ? mediaTypes.ociIndex : mediaTypes.ociManifest;
  } catch {
    throw new ShoalError('MANIFEST_INVALID', 'manifest is not JSON');
  }
};

/**
 * Reads of a Shoal proxy's OCI Distribution API by other services (the agent's manifests,
 * the console's manifest contents and image configs), on the kit's transport: the service
 * client's timeouts, SERVICE_UNAVAILABLE when the proxy cannot be reached, bodies read up to
 * a bound. The caller checks digests.
 */
export const createProxyClient = (
  url: string,
  options: { timeoutMs?: number; identity?: ClientIdentity } = {},
) => {
  const client = createServiceClient(url, {
    timeoutMs: options.timeoutMs ?? 30_000,
    ...(options.identity !== undefined && { identity: options.identity }),
  });

  const get = async (
    path: string,
    headers: Record<string, string>,
    maxBytes: number,
    unknown: () => ShoalError,
  ) => {
    const response = await client.request({ method: 'GET', path, headers });
    const { bytes, truncated } = await readBody(response.body, maxBytes);
    if (response.status === 404) throw unknown();
    if (response.status === 401 || response.status === 403) {
      throw new ShoalError('DENIED', `the proxy refused ${path}`);
    }
    if (response.status < 200 || response.status >= 300) {
      throw new ShoalError('SERVICE_UNAVAILABLE', `proxy answered ${response.status}`);
    }
    return { response, bytes, truncated };
  };

  return {
    url: client.url,

    /** Any request to the proxy, answered whatever its status (the caller reads the body). */
    request: client.request,

    /**
     * A manifest by digest with its media type (`MANIFEST_UNKNOWN` when the repo lacks it),
     * asked with a caller's `authorization` when given (`DENIED` when the proxy refuses it).
     */
    manifest: async (
      repo: string,
      digest: Digest,
      authorization?: string,
    ): Promise<{ bytes: Buffer; mediaType: string }> => {
      const { response, bytes, truncated } = await get(
        `/v2/${repo}/manifests/${digest}`,
        { accept: manifestAccept, ...(authorization !== undefined && { authorization }) },
        maxManifestBytes,
        () => new ShoalError('MANIFEST_UNKNOWN', `manifest ${digest} is not in ${repo}`),
      );
      if (truncated) {
        throw new ShoalError(
          'MANIFEST_INVALID',
          `manifest ${digest} is over ${maxManifestBytes} bytes`,
        );
      }
      const contentType = headerOf(response.headers, 'content-type')?.split(';')[0]?.trim();
      return { bytes, mediaType: contentType || mediaTypeOf(bytes) };
    },

    /** A small blob (an image config), whole; `BLOB_UNKNOWN` when missing or over `maxBytes`. */
    smallBlob: async (repo: string, digest: Digest, maxBytes: number): Promise<Buffer> => {
      const { bytes, truncated } = await get(
        `/v2/${repo}/blobs/${digest}`,
        {},
        maxBytes,
        () => new ShoalError('BLOB_UNKNOWN', `blob ${digest} is not in ${repo}`),
      );
      if (truncated) throw new ShoalError('BLOB_UNKNOWN', `blob ${digest} is over ${maxBytes}`);
      return bytes;
    },

    close: (): Promise<void> => client.close(),
  };
};

export type ProxyClient = ReturnType<typeof createProxyClient>;

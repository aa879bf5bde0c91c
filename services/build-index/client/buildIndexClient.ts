import type { Position } from '../../../domain';
import { positionHeaders } from '../../shared/http';
import { createJsonClient } from '../../shared/httpClient';
import type { ClientIdentity } from '../../shared/security/clientIdentity';
import { onBehalfOfHeaders } from '../../shared/security/authenticate';
import { tagPath } from './tagPath';
import type { Paging, ReadOptions, TagApi, TagChange, TagView, WriteOptions } from './tagApi';

/** TagApi over a running build-index's HTTP API. */
export const createBuildIndexClient = (
  baseUrl: string,
  options: { timeoutMs?: number; identity?: ClientIdentity } = {},
): TagApi => {
  const call = createJsonClient(baseUrl, options);
  const headers = (read?: ReadOptions): Record<string, string> =>
    read?.minPosition === undefined ? {} : { [positionHeaders.minimum]: String(read.minPosition) };
  const query = (params: Record<string, string | number | undefined>) => {
    const search = new URLSearchParams();
    for (const [k, v] of Object.entries(params)) if (v !== undefined) search.set(k, String(v));
    const text = search.toString();
    return text.length > 0 ? `?${text}` : '';
  };
  const paging = (p?: Paging) => ({ n: p?.n, last: p?.last });
  /** Whom a write is for: build-index records them when this client is a cluster service. */
  const onBehalfOf = (write?: WriteOptions): Record<string, string> =>
    write?.by === undefined
      ? {}
      : {
          [onBehalfOfHeaders.actor]: write.by.actor,
          ...(write.by.client !== undefined && { [onBehalfOfHeaders.client]: write.by.client }),
        };

  return {
    put: async (ref, digest, write) =>
      (
        await call<{ position: Position; changed: boolean }>('PUT', tagPath(ref), {
          body: {
            digest,
            ...(write?.overwrite !== undefined && { overwrite: write.overwrite }),
            ...(write?.requireManifest === false && { requireManifest: false }),
          },
          headers: onBehalfOf(write),
        })
      ).body,
    get: async (ref, read) => {
      const at =
        read?.at === undefined
          ? undefined
          : 'position' in read.at
            ? String(read.at.position)
            : new Date(read.at.time).toISOString();
      return (
        await call<TagView>('GET', `${tagPath(ref)}${query({ at })}`, { headers: headers(read) })
      ).body;
    },
    delete: async (ref, write) =>
      (await call<{ position: Position }>('DELETE', tagPath(ref), { headers: onBehalfOf(write) }))
        .body,
    list: async (repo, read) =>
      (
        await call<{ tags: string[] }>(
          'GET',
          `/v1/repositories/${repo}/tags${query(paging(read))}`,
          { headers: headers(read) },
        )
      ).body,
    history: async (ref, read) =>
      (
        await call<{ history: TagChange[] }>('GET', tagPath(ref, '/history'), {
          headers: headers(read),
        })
      ).body.history,
    catalog: async (read) =>
      (
        await call<{ repositories: string[] }>('GET', `/v1/catalog${query(paging(read))}`, {
          headers: headers(read),
        })
      ).body,
  };
};

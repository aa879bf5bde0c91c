import { isShoalError } from '../../../domain';
import type { ClientIdentity } from '../../shared/security/clientIdentity';
import { createBuildIndexClient } from './buildIndexClient';
import type { TagApi } from './tagApi';

/**
 * Whether a call never reached its build-index (refused, reset before an answer, timed out
 * connecting): the one failure another instance may be asked about instead. An answer, even
 * a 503 of its own, is the build-index's word and is passed on.
 */
const unreached = (error: unknown): boolean =>
  isShoalError(error, 'SERVICE_UNAVAILABLE') && error.cause !== undefined;

/**
 * One TagApi over several build-index instances of a cluster (they share the log, so any one
 * answers for all): calls go to the one that answered last; one that cannot be reached costs
 * a retry on the next, not an outage. Tag writes are idempotent (a put of the same digest
 * appends nothing), so a write whose connection broke may be sent again elsewhere.
 */
export const createFailoverTagApi = (apis: readonly TagApi[]): TagApi => {
  if (apis.length === 0) throw new Error('createFailoverTagApi: no build-index');
  if (apis.length === 1) return apis[0] as TagApi;
  let current = 0;
  const call = async <T>(fn: (api: TagApi) => Promise<T>): Promise<T> => {
    let lastError: unknown;
    for (let tried = 0; tried < apis.length; tried++) {
      const index = (current + tried) % apis.length;
      try {
        const result = await fn(apis[index] as TagApi);
        current = index;
        return result;
      } catch (error) {
        if (!unreached(error)) throw error;
        lastError = error;
      }
    }
    throw lastError;
  };
  return {
    put: (ref, digest, options) => call((api) => api.put(ref, digest, options)),
    get: (ref, options) => call((api) => api.get(ref, options)),
    delete: (ref, options) => call((api) => api.delete(ref, options)),
    list: (repo, options) => call((api) => api.list(repo, options)),
    history: (ref, options) => call((api) => api.history(ref, options)),
    catalog: (options) => call((api) => api.catalog(options)),
  };
};

/** The build-index URLs a role's `buildIndex` block names (`url`, then `urls`), once each. */
export const buildIndexUrls = (block: { url: string; urls: readonly string[] }): string[] => [
  ...new Set([block.url, ...block.urls].filter((url) => url !== '')),
];

/** Tags over HTTP from a cluster's build-index instances, failing over between them. */
export const createBuildIndexTags = (
  urls: readonly string[],
  options: { timeoutMs?: number; identity?: ClientIdentity } = {},
): TagApi => createFailoverTagApi(urls.map((url) => createBuildIndexClient(url, options)));

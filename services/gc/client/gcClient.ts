import { createJsonClient } from '../../shared/httpClient';
import type { GcApi, GcReport } from './gcApi';

/** GcApi over HTTP: a build-index GC is mounted in. A run may take long: no idle timeout cut. */
export const createGcClient = (baseUrl: string, options: { timeoutMs?: number } = {}): GcApi => {
  const call = createJsonClient(baseUrl, { timeoutMs: options.timeoutMs ?? 3_600_000 });
  return {
    run: async (request) =>
      (await call<GcReport>('POST', '/v1/gc/runs', { body: { ...request } })).body,
  };
};

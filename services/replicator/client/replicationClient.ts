import type { Position } from '../../../domain';
import { positionHeaders } from '../../shared/http';
import { createJsonClient } from '../../shared/httpClient';
import type { ClientIdentity } from '../../shared/security/clientIdentity';
import type { ReadOptions, ReplicationApi, ReplicationStatus, RuleView } from './replicationApi';

/** ReplicationApi over HTTP: a build-index the replicator is mounted in, or `shoal replicator`. */
export const createReplicationClient = (
  baseUrl: string,
  options: { timeoutMs?: number; identity?: ClientIdentity } = {},
): ReplicationApi => {
  const call = createJsonClient(baseUrl, options);
  const headers = (read?: ReadOptions): Record<string, string> =>
    read?.minPosition === undefined ? {} : { [positionHeaders.minimum]: String(read.minPosition) };
  return {
    addRule: async (input) =>
      (
        await call<{ rule: RuleView; position: Position }>('POST', '/v1/replication/rules', {
          body: {
            ...(input.name !== undefined && { name: input.name }),
            repo: input.repoPattern,
            ...(input.tagPattern !== undefined && { tag: input.tagPattern }),
            to: input.destination,
            ...(input.backfill !== undefined && { backfill: input.backfill }),
          },
        })
      ).body,
    removeRule: async (idOrName) =>
      (
        await call<{ id: string; position: Position }>(
          'DELETE',
          `/v1/replication/rules/${encodeURIComponent(idOrName)}`,
        )
      ).body,
    listRules: async (read) =>
      (
        await call<{ rules: RuleView[] }>(
          'GET',
          `/v1/replication/rules${read?.all ? '?all=true' : ''}`,
          { headers: headers(read) },
        )
      ).body.rules,
    status: async (read) =>
      (await call<ReplicationStatus>('GET', '/v1/replication/status', { headers: headers(read) }))
        .body,
  };
};

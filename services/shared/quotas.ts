import type { ProjectionStore } from '../../domain';
import { namespacesOf } from '../../domain';
import type { QuotaDoc, UsageDoc } from '../../projections';
import {
  policiesProjection,
  policyPartitions,
  referencesKeys,
  referencesProjection,
} from '../../projections';

/**
 * The quotas that apply to a repository and what pushing a blob there would add to each:
 * the blob's size for every namespace it is not counted in yet. Reads the `policies` and
 * `references` projections. Returns the first quota the push would exceed, if any.
 */
export const quotaExceededBy = async (
  store: ProjectionStore,
  repo: string,
  blobs: ReadonlyArray<{ digest: string; size: number }>,
): Promise<{ namespace: string; bytes: number; used: number; adding: number } | undefined> => {
  for (const namespace of namespacesOf(repo)) {
    const quota = await store.get<QuotaDoc>(policiesProjection.name, {
      partition: policyPartitions.quota,
      id: namespace,
    });
    if (quota === undefined) continue;
    const usage = await store.get<UsageDoc>(
      referencesProjection.name,
      referencesKeys.usage(namespace),
    );
    let adding = 0;
    for (const blob of blobs) {
      const counted = await store.get(
        referencesProjection.name,
        referencesKeys.namespaceBlob(namespace, blob.digest),
      );
      if (counted === undefined) adding += blob.size;
    }
    const used = usage?.bytes ?? 0;
    if (adding > 0 && used + adding > quota.bytes) {
      return { namespace, bytes: quota.bytes, used, adding };
    }
  }
  return undefined;
};

/** Whether any quota covers the repository (a push there must be checked). */
export const quotaApplies = async (store: ProjectionStore, repo: string): Promise<boolean> => {
  for (const namespace of namespacesOf(repo)) {
    const quota = await store.get<QuotaDoc>(policiesProjection.name, {
      partition: policyPartitions.quota,
      id: namespace,
    });
    if (quota !== undefined) return true;
  }
  return false;
};

import type { Static } from '@sinclair/typebox';
import { Type } from '@sinclair/typebox';
import { RepoNameSchema } from '../oci/schemas';

/**
 * A storage quota on a repository namespace: `team-a` covers `team-a` and every repository
 * under `team-a/`. Usage is the size of the distinct blobs linked to its repositories (a blob
 * linked to two of them counts once).
 */
export const QuotaSetV1 = Type.Object(
  { namespace: RepoNameSchema, bytes: Type.Integer({ minimum: 0 }) },
  { additionalProperties: false },
);
export type QuotaSet = Static<typeof QuotaSetV1>;

export const QuotaRemovedV1 = Type.Object(
  { namespace: RepoNameSchema },
  { additionalProperties: false },
);
export type QuotaRemoved = Static<typeof QuotaRemovedV1>;

export const quotaStream = (namespace: string): string => `quota/${namespace}`;

import type { Static } from '@sinclair/typebox';
import { Type } from '@sinclair/typebox';
import { DigestSchema, RepoNameSchema, TagSchema } from '../oci/schemas';

export const TagPushedV1 = Type.Object(
  {
    repo: RepoNameSchema,
    tag: TagSchema,
    digest: DigestSchema,
    /** The digest the tag pointed to before, when it existed: history reads without a join. */
    previous: Type.Optional(DigestSchema),
  },
  { additionalProperties: false },
);
export type TagPushed = Static<typeof TagPushedV1>;

export const TagDeletedV1 = Type.Object(
  {
    repo: RepoNameSchema,
    tag: TagSchema,
    previous: Type.Optional(DigestSchema),
    /**
     * Set when a GC run deleted the tag because a retention rule does not keep it. Such
     * deletions are the source's housekeeping: replication does not copy them.
     */
    retention: Type.Optional(
      Type.Object(
        {
          rule: Type.String({ minLength: 1, maxLength: 128 }),
          run: Type.String({ minLength: 1, maxLength: 64 }),
        },
        { additionalProperties: false },
      ),
    ),
  },
  { additionalProperties: false },
);
export type TagDeleted = Static<typeof TagDeletedV1>;

export const tagStream = (repo: string, tag: string): string => `tag/${repo}:${tag}`;

import type { Static } from '@sinclair/typebox';
import { Type } from '@sinclair/typebox';
import { DigestSchema, RepoNameSchema, TagSchema } from '../oci/schemas';

const RuleId = Type.String({ minLength: 1, maxLength: 128, pattern: '^[A-Za-z0-9._-]+$' });
const Pattern = Type.String({ minLength: 1, maxLength: 512 });
const Destination = Type.String({ minLength: 1, maxLength: 2048, description: 'registry URL' });
const Position = Type.Integer({ minimum: 0 });

export const ReplicationRuleAddedV1 = Type.Object(
  {
    id: RuleId,
    /** A name people use for the rule (unique among active rules); the id is what events use. */
    name: Type.Optional(Type.String({ minLength: 1, maxLength: 128 })),
    repoPattern: Pattern,
    tagPattern: Pattern,
    destination: Destination,
    backfill: Type.Optional(Type.Boolean()),
  },
  { additionalProperties: false },
);
export type ReplicationRuleAdded = Static<typeof ReplicationRuleAddedV1>;

export const ReplicationRuleRemovedV1 = Type.Object(
  { id: RuleId },
  { additionalProperties: false },
);
export type ReplicationRuleRemoved = Static<typeof ReplicationRuleRemovedV1>;

const outcome = {
  ruleId: RuleId,
  repo: RepoNameSchema,
  tag: TagSchema,
  /** Absent when the replicated change was a tag deletion. */
  digest: Type.Optional(DigestSchema),
  destination: Destination,
  sourcePosition: Position,
};

export const ReplicationSucceededV1 = Type.Object(outcome, { additionalProperties: false });
export type ReplicationSucceeded = Static<typeof ReplicationSucceededV1>;

export const ReplicationFailedV1 = Type.Object(
  {
    ...outcome,
    attempt: Type.Integer({ minimum: 1 }),
    error: Type.String({ maxLength: 4096 }),
    /** When the next attempt starts. Absent: the replicator gave up on this change and moved on
     * (max attempts reached, or the destination cannot do it, e.g. delete a tag). */
    retryAt: Type.Optional(Type.String({ maxLength: 64, description: 'ISO 8601 time' })),
  },
  { additionalProperties: false },
);
export type ReplicationFailed = Static<typeof ReplicationFailedV1>;

export const ruleStream = (id: string): string => `rule/${id}`;

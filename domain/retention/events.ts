import type { Static } from '@sinclair/typebox';
import { Type } from '@sinclair/typebox';

const RuleId = Type.String({ minLength: 1, maxLength: 128, pattern: '^[A-Za-z0-9._-]+$' });
const Pattern = Type.String({ minLength: 1, maxLength: 512 });

/**
 * A retention rule: in repositories matching `repoPattern`, of the tags matching
 * `tagPattern`, keep the `keepLast` most recently pushed (a move counts as a push) or those
 * pushed within `keepWithinMs`; the next GC run deletes the others, naming the rule. Tags
 * matching a `protect` pattern of any rule are never deleted. With `untagged`, untagged
 * manifests of those repositories count as candidates too, ranked by push time alongside.
 */
export const RetentionRuleAddedV1 = Type.Object(
  {
    id: RuleId,
    name: Type.Optional(Type.String({ minLength: 1, maxLength: 128 })),
    repoPattern: Pattern,
    tagPattern: Pattern,
    keepLast: Type.Optional(Type.Integer({ minimum: 0 })),
    keepWithinMs: Type.Optional(Type.Integer({ minimum: 0 })),
    untagged: Type.Optional(Type.Boolean()),
    protect: Type.Optional(Type.Array(Pattern, { maxItems: 64 })),
  },
  { additionalProperties: false },
);
export type RetentionRuleAdded = Static<typeof RetentionRuleAddedV1>;

export const RetentionRuleRemovedV1 = Type.Object({ id: RuleId }, { additionalProperties: false });
export type RetentionRuleRemoved = Static<typeof RetentionRuleRemovedV1>;

export const retentionStream = (id: string): string => `retention/${id}`;

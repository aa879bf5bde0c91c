import type { Static } from '@sinclair/typebox';
import { Type } from '@sinclair/typebox';
import { GcRunIdSchema } from '../blob/events';
import { DigestSchema, RepoNameSchema } from '../oci/schemas';

export const ManifestPushedV1 = Type.Object(
  {
    repo: RepoNameSchema,
    digest: DigestSchema,
    mediaType: Type.String({ minLength: 1, maxLength: 255 }),
    size: Type.Integer({ minimum: 0 }),
    /** Digests of the blobs and child manifests this manifest references. */
    references: Type.Array(DigestSchema),
    /** The manifest this one refers to (OCI 1.1 `subject`), for the referrers API. */
    subject: Type.Optional(DigestSchema),
    /**
     * The type the referrers API reports: the manifest's `artifactType`, else (image manifests)
     * its config's media type. Written for manifests that have a subject or declare a type.
     */
    artifactType: Type.Optional(Type.String({ minLength: 1, maxLength: 255 })),
    /** The manifest's annotations, kept for manifests with a subject (referrers list them). */
    annotations: Type.Optional(Type.Record(Type.String(), Type.String())),
  },
  { additionalProperties: false },
);
export type ManifestPushed = Static<typeof ManifestPushedV1>;

export const ManifestDeletedV1 = Type.Object(
  {
    repo: RepoNameSchema,
    digest: DigestSchema,
    /** What the deleted manifest referenced and its subject, copied from its ManifestPushed so
     * projections can undo the links without a lookup. */
    references: Type.Optional(Type.Array(DigestSchema)),
    subject: Type.Optional(DigestSchema),
  },
  { additionalProperties: false },
);
export type ManifestDeleted = Static<typeof ManifestDeletedV1>;

/**
 * An index pushed to `repo` references this manifest (a child). Written on the child's stream
 * before the index's `ManifestPushed`, so GC's compare-and-swap on the child sees it.
 */
export const ManifestReferencedV1 = Type.Object(
  { repo: RepoNameSchema, digest: DigestSchema, by: DigestSchema },
  { additionalProperties: false },
);
export type ManifestReferenced = Static<typeof ManifestReferencedV1>;

/**
 * GC removed an untagged manifest that nothing live references (`untagged`), or one a
 * retention rule untagged (`retention`, with the rule). Carries what `ManifestDeleted` does.
 */
export const ManifestCollectedV1 = Type.Object(
  {
    repo: RepoNameSchema,
    digest: DigestSchema,
    size: Type.Integer({ minimum: 0 }),
    references: Type.Optional(Type.Array(DigestSchema)),
    subject: Type.Optional(DigestSchema),
    run: GcRunIdSchema,
    reason: Type.Union([Type.Literal('untagged'), Type.Literal('retention')]),
    rule: Type.Optional(Type.String({ minLength: 1, maxLength: 128 })),
  },
  { additionalProperties: false },
);
export type ManifestCollected = Static<typeof ManifestCollectedV1>;

export const manifestStream = (repo: string, digest: string): string =>
  `manifest/${repo}@${digest}`;

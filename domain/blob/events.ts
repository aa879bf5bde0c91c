import type { Static } from '@sinclair/typebox';
import { Type } from '@sinclair/typebox';
import { DigestSchema, RepoNameSchema } from '../oci/schemas';

const Size = Type.Integer({ minimum: 0, description: 'bytes' });
const MediaType = Type.String({ minLength: 1, maxLength: 255 });
const OriginId = Type.String({ minLength: 1, maxLength: 255 });

export const BlobUploadedV1 = Type.Object(
  {
    digest: DigestSchema,
    size: Size,
    mediaType: Type.Optional(MediaType),
    /** The repository the blob was pushed to: write-back routes by it (Kraken loses it). */
    repo: RepoNameSchema,
  },
  { additionalProperties: false },
);
export type BlobUploaded = Static<typeof BlobUploadedV1>;

export const BlobPlacedV1 = Type.Object(
  { digest: DigestSchema, origin: OriginId },
  { additionalProperties: false },
);
export type BlobPlaced = Static<typeof BlobPlacedV1>;

/**
 * An origin dropped its copy of a blob it no longer owns (the ring changed while it was away),
 * once the owners held theirs: it is no longer a holder.
 */
export const BlobReleasedV1 = Type.Object(
  { digest: DigestSchema, origin: OriginId },
  { additionalProperties: false },
);
export type BlobReleased = Static<typeof BlobReleasedV1>;

export const BlobPersistedV1 = Type.Object(
  { digest: DigestSchema, backend: Type.String({ minLength: 1, maxLength: 255 }) },
  { additionalProperties: false },
);
export type BlobPersisted = Static<typeof BlobPersistedV1>;

export const BlobDeletedV1 = Type.Object({ digest: DigestSchema }, { additionalProperties: false });
export type BlobDeleted = Static<typeof BlobDeletedV1>;

/** The id of one GC run, stamped on everything it removes. */
export const GcRunIdSchema = Type.String({
  minLength: 1,
  maxLength: 64,
  pattern: '^[A-Za-z0-9._:-]+$',
});

/**
 * A manifest push in `repo` references the blob (its config, a layer, or the manifest's own
 * bytes). Written on the blob's stream before `ManifestPushed`, so that a GC decision taken on
 * an older version of the stream fails its compare-and-swap: every event that creates a
 * reference to a blob is on the blob's stream.
 */
export const BlobReferencedV1 = Type.Object(
  { digest: DigestSchema, repo: RepoNameSchema, manifest: DigestSchema },
  { additionalProperties: false },
);
export type BlobReferenced = Static<typeof BlobReferencedV1>;

/** GC removed the blob's link to one repository (no manifest of it uses the blob). */
export const BlobUnlinkedV1 = Type.Object(
  {
    digest: DigestSchema,
    repo: RepoNameSchema,
    size: Size,
    run: GcRunIdSchema,
    reason: Type.Literal('unreferenced'),
  },
  { additionalProperties: false },
);
export type BlobUnlinked = Static<typeof BlobUnlinkedV1>;

/**
 * GC removed the blob from the cluster: every link (`repos`, so projections undo them without
 * a lookup) and its bytes. Origins drop their copies; `eraser`, the origin GC chose (the
 * digest's first owner), deletes the backend objects and records `BlobErased`. An upload of
 * the same digest afterwards starts a new life of the blob.
 */
export const BlobCollectedV1 = Type.Object(
  {
    digest: DigestSchema,
    size: Size,
    repos: Type.Array(RepoNameSchema),
    run: GcRunIdSchema,
    /** `unreferenced`: no manifest uses it; `deleted`: a client deleted it (`BlobDeleted`). */
    reason: Type.Union([Type.Literal('unreferenced'), Type.Literal('deleted')]),
    eraser: Type.Optional(OriginId),
  },
  { additionalProperties: false },
);
export type BlobCollected = Static<typeof BlobCollectedV1>;

/**
 * The eraser deleted the backend objects of a collected blob (`collected`: the position of
 * that `BlobCollected`). A write-back of a new life of the blob waits for it, so the deletion
 * can never remove the newer copy.
 */
export const BlobErasedV1 = Type.Object(
  {
    digest: DigestSchema,
    collected: Type.Integer({ minimum: 1 }),
    origin: OriginId,
    /** Backends whose object was deleted (read-only backends are never touched). */
    backends: Type.Array(Type.String({ minLength: 1, maxLength: 255 })),
    /** The blob was uploaded again before the eraser ran: nothing was deleted. */
    skipped: Type.Optional(Type.Boolean()),
  },
  { additionalProperties: false },
);
export type BlobErased = Static<typeof BlobErasedV1>;

export const blobStream = (digest: string): string => `blob/${digest}`;

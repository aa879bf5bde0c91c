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

export const BlobPersistedV1 = Type.Object(
  { digest: DigestSchema, backend: Type.String({ minLength: 1, maxLength: 255 }) },
  { additionalProperties: false },
);
export type BlobPersisted = Static<typeof BlobPersistedV1>;

export const BlobDeletedV1 = Type.Object({ digest: DigestSchema }, { additionalProperties: false });
export type BlobDeleted = Static<typeof BlobDeletedV1>;

export const blobStream = (digest: string): string => `blob/${digest}`;

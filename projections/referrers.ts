import type { DocKey, Position, Projection, RecordedEvent } from '../domain';

/**
 * The referrers of each manifest (OCI 1.1 `subject`): what the replicator carries along with
 * a tag. A small read model of its own, so the replicator does not need the proxy's
 * `manifest-index` (blob links and all) to know which signatures and SBOMs a manifest has.
 *
 * | partition         | id              | doc             | from                             |
 * | ----------------- | --------------- | --------------- | -------------------------------- |
 * | `<repo>@<subject>` | referrer digest | ReferrerEntryDoc | ManifestPushed/Deleted/Collected |
 */
export type ReferrerEntryDoc = {
  readonly mediaType: string;
  readonly size: number;
  readonly artifactType?: string;
  readonly position: Position;
};

export const referrersPartition = (repo: string, subject: string): string => `${repo}@${subject}`;

const keysOf = (event: RecordedEvent): DocKey[] => {
  switch (event.type) {
    case 'ManifestPushed':
    case 'ManifestDeleted':
    case 'ManifestCollected': {
      const { repo, digest, subject } = event.data;
      return subject === undefined
        ? []
        : [{ partition: referrersPartition(repo, subject), id: digest }];
    }
    default:
      return [];
  }
};

const evolve = (
  doc: ReferrerEntryDoc | undefined,
  event: RecordedEvent,
): ReferrerEntryDoc | undefined => {
  switch (event.type) {
    case 'ManifestPushed': {
      const { mediaType, size, artifactType } = event.data;
      return {
        mediaType,
        size,
        ...(artifactType !== undefined && { artifactType }),
        position: event.position,
      };
    }
    case 'ManifestDeleted':
    case 'ManifestCollected':
      return undefined;
    default:
      return doc;
  }
};

/** repo and subject → the manifests that refer to it. */
export const referrersProjection: Projection<ReferrerEntryDoc> = {
  name: 'referrers',
  version: 1,
  eventTypes: ['ManifestPushed', 'ManifestDeleted', 'ManifestCollected'],
  keysOf,
  evolve,
};

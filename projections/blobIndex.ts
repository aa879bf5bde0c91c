import type { Projection, RecordedEvent } from '../domain';

/** What the cluster knows of one blob: partition = `blobs`, id = digest. */
export type BlobDoc = {
  readonly size: number;
  readonly mediaType?: string;
  /** Repositories it was pushed to, in first-push order. */
  readonly repos: readonly string[];
  /** Origins that hold a copy. */
  readonly origins: readonly string[];
  /** Backends it was written back to. */
  readonly backends: readonly string[];
};

export const blobPartition = 'blobs';

const add = (list: readonly string[], item: string) =>
  list.includes(item) ? list : [...list, item];

const empty: BlobDoc = { size: 0, repos: [], origins: [], backends: [] };

/** digest → size, media type, where it is held and persisted. */
export const blobIndexProjection: Projection<BlobDoc> = {
  name: 'blob-index',
  version: 3,
  eventTypes: [
    'BlobUploaded',
    'BlobPlaced',
    'BlobReleased',
    'BlobPersisted',
    'BlobDeleted',
    'BlobUnlinked',
    'BlobCollected',
  ],
  keysOf: (event: RecordedEvent) =>
    event.type === 'BlobUploaded' ||
    event.type === 'BlobPlaced' ||
    event.type === 'BlobReleased' ||
    event.type === 'BlobPersisted' ||
    event.type === 'BlobDeleted' ||
    event.type === 'BlobUnlinked' ||
    event.type === 'BlobCollected'
      ? [{ partition: blobPartition, id: event.data.digest }]
      : [],
  evolve: (doc, event) => {
    const current = doc ?? empty;
    switch (event.type) {
      case 'BlobUploaded':
        return {
          ...current,
          size: event.data.size,
          ...(event.data.mediaType !== undefined && { mediaType: event.data.mediaType }),
          repos: add(current.repos, event.data.repo),
        };
      case 'BlobPlaced':
        return { ...current, origins: add(current.origins, event.data.origin) };
      case 'BlobReleased':
        return doc === undefined
          ? undefined
          : { ...current, origins: current.origins.filter((o) => o !== event.data.origin) };
      case 'BlobPersisted':
        return { ...current, backends: add(current.backends, event.data.backend) };
      case 'BlobUnlinked':
        return doc === undefined
          ? undefined
          : { ...current, repos: current.repos.filter((r) => r !== event.data.repo) };
      case 'BlobDeleted':
      case 'BlobCollected':
        return undefined;
      default:
        return doc;
    }
  },
};

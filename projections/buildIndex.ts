import type { Digest, Position, Projection, RecordedEvent } from '../domain';

/** What build-index knows of one tag: partition = repository, id = tag. */
export type TagDoc = {
  readonly digest: Digest;
  /** Position of the event that set it, for `Shoal-Position` on reads. */
  readonly position: Position;
  readonly at: string;
};

/** repo → tag → digest. The catalog is the set of partitions; a repo's tags are its ids. */
export const buildIndexProjection: Projection<TagDoc> = {
  name: 'build-index',
  version: 1,
  eventTypes: ['TagPushed', 'TagDeleted'],
  keysOf: (event: RecordedEvent) =>
    event.type === 'TagPushed' || event.type === 'TagDeleted'
      ? [{ partition: event.data.repo, id: event.data.tag }]
      : [],
  evolve: (doc, event) => {
    switch (event.type) {
      case 'TagPushed':
        return {
          digest: event.data.digest as Digest,
          position: event.position,
          at: event.metadata.at,
        };
      case 'TagDeleted':
        return undefined;
      default:
        return doc;
    }
  },
};

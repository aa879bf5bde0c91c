import type { DocKey, Projection, RecordedEvent } from '../domain';

/** One ring member: partition `ring`, id = origin id. */
export type RingMemberDoc = {
  /** Where other services reach it (its advertised URL). */
  readonly address: string;
  /** Position of the event that last set the address. */
  readonly position: number;
};

/** Who holds one blob: partition `blobs`, id = digest. */
export type BlobHoldersDoc = {
  /** Origins that stored a copy, in the order they reported it. */
  readonly origins: readonly string[];
};

export const placementPartitions = { ring: 'ring', blobs: 'blobs' } as const;

const add = (list: readonly string[], item: string) =>
  list.includes(item) ? list : [...list, item];

/**
 * Origin placement: ring membership from `OriginJoined`/`OriginLeft` (a member joins, or
 * rejoins with a new address, and stays until it leaves) and, per digest, the origins that
 * hold a copy (`BlobPlaced`; one that released its copy, `BlobReleased`, no longer does;
 * all forgotten on `BlobDeleted` and `BlobCollected`). Owners are not stored: they are
 * `owners(digest, members, R)` over the current members, so a ring change needs no rewrite.
 */
export const placementProjection: Projection<RingMemberDoc | BlobHoldersDoc> = {
  name: 'placement',
  version: 3,
  eventTypes: [
    'OriginJoined',
    'OriginLeft',
    'BlobPlaced',
    'BlobReleased',
    'BlobDeleted',
    'BlobCollected',
  ],
  keysOf: (event: RecordedEvent): readonly DocKey[] => {
    switch (event.type) {
      case 'OriginJoined':
      case 'OriginLeft':
        return [{ partition: placementPartitions.ring, id: event.data.id }];
      case 'BlobPlaced':
      case 'BlobReleased':
      case 'BlobDeleted':
      case 'BlobCollected':
        return [{ partition: placementPartitions.blobs, id: event.data.digest }];
      default:
        return [];
    }
  },
  evolve: (doc, event) => {
    switch (event.type) {
      case 'OriginJoined':
        return { address: event.data.address, position: event.position };
      case 'OriginLeft':
        return undefined;
      case 'BlobPlaced': {
        const origins = (doc as BlobHoldersDoc | undefined)?.origins ?? [];
        return { origins: add(origins, event.data.origin) };
      }
      case 'BlobReleased': {
        const origins = (doc as BlobHoldersDoc | undefined)?.origins ?? [];
        const left = origins.filter((o) => o !== event.data.origin);
        return left.length === 0 ? undefined : { origins: left };
      }
      case 'BlobDeleted':
      case 'BlobCollected':
        return undefined;
      default:
        return doc;
    }
  },
};

export type RingMember = { readonly id: string; readonly address: string };

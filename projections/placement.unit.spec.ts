import { given, recordedAt } from '../test/fixtures/projections';
import { placementPartitions, placementProjection } from './placement';

const digest = `sha256:${'1'.repeat(64)}`;

describe('placement projection', () => {
  it('given joins, holds the members and their latest addresses', () => {
    const docs = given(
      placementProjection,
      ['OriginJoined', { id: 'o1', address: 'http://a:1' }],
      ['OriginJoined', { id: 'o2', address: 'http://b:1' }],
      ['OriginJoined', { id: 'o1', address: 'http://a:2' }],
    );
    expect(docs.get(placementPartitions.ring, 'o1')).toMatchObject({ address: 'http://a:2' });
    expect(docs.get(placementPartitions.ring, 'o2')).toMatchObject({ address: 'http://b:1' });
  });

  it('when an origin leaves, drops it from the ring', () => {
    const docs = given(
      placementProjection,
      ['OriginJoined', { id: 'o1', address: 'http://a:1' }],
      ['OriginJoined', { id: 'o2', address: 'http://b:1' }],
      ['OriginLeft', { id: 'o1' }],
    );
    expect(docs.ids(placementPartitions.ring)).toEqual(['o2']);
  });

  it('given placements, holds each digest’s origins once, in report order', () => {
    const docs = given(
      placementProjection,
      ['BlobPlaced', { digest, origin: 'o2' }],
      ['BlobPlaced', { digest, origin: 'o1' }],
      ['BlobPlaced', { digest, origin: 'o2' }],
    );
    expect(docs.get(placementPartitions.blobs, digest)).toEqual({ origins: ['o2', 'o1'] });
  });

  it('when a blob is deleted, forgets its holders', () => {
    const docs = given(
      placementProjection,
      ['BlobPlaced', { digest, origin: 'o1' }],
      ['BlobDeleted', { digest }],
    );
    expect(docs.size).toBe(0);
  });

  it('when an origin releases its copy, it is no longer a holder; the last one, no doc', () => {
    const docs = given(
      placementProjection,
      ['BlobPlaced', { digest, origin: 'o1' }],
      ['BlobPlaced', { digest, origin: 'o2' }],
      ['BlobPlaced', { digest, origin: 'o3' }],
      ['BlobReleased', { digest, origin: 'o1' }],
    );
    expect(docs.get(placementPartitions.blobs, digest)).toEqual({ origins: ['o2', 'o3'] });
    const gone = given(
      placementProjection,
      ['BlobPlaced', { digest, origin: 'o1' }],
      ['BlobReleased', { digest, origin: 'o1' }],
    );
    expect(gone.size).toBe(0);
  });

  it('ignores events it does not declare', () => {
    const event = recordedAt(1, 'BlobPersisted', { digest, backend: 'fs' });
    expect(placementProjection.eventTypes).not.toContain(event.type);
    expect(placementProjection.keysOf(event)).toEqual([]);
  });
});

import type { EventData, EventType, RecordedEvent } from '../domain';
import { makeEvent } from '../domain';
import type { BlobHoldersDoc, RingMemberDoc } from './placement';
import { placementPartitions, placementProjection } from './placement';

let position = 0;
const recorded = <T extends EventType>(type: T, data: EventData<T>): RecordedEvent =>
  ({
    ...makeEvent(type, data, {
      id: `e${++position}`,
      metadata: { at: '2026-01-01T00:00:00.000Z', actor: 'test', cluster: 'c' },
    }),
    position,
    streamVersion: 0,
  }) as RecordedEvent;

/** Given events, the documents the projection holds (a tiny in-memory runner). */
const project = (events: RecordedEvent[]) => {
  const docs = new Map<string, unknown>();
  for (const event of events) {
    if (!placementProjection.eventTypes.includes(event.type)) continue;
    for (const key of placementProjection.keysOf(event)) {
      const id = `${key.partition}/${key.id}`;
      const next = placementProjection.evolve(
        docs.get(id) as RingMemberDoc | BlobHoldersDoc | undefined,
        event,
        key,
      );
      if (next === undefined) docs.delete(id);
      else docs.set(id, next);
    }
  }
  return docs;
};

const digest = `sha256:${'1'.repeat(64)}`;

describe('placement projection', () => {
  it('given joins, holds the members and their latest addresses', () => {
    const docs = project([
      recorded('OriginJoined', { id: 'o1', address: 'http://a:1' }),
      recorded('OriginJoined', { id: 'o2', address: 'http://b:1' }),
      recorded('OriginJoined', { id: 'o1', address: 'http://a:2' }),
    ]);
    expect(docs.get(`${placementPartitions.ring}/o1`)).toMatchObject({ address: 'http://a:2' });
    expect(docs.get(`${placementPartitions.ring}/o2`)).toMatchObject({ address: 'http://b:1' });
  });

  it('when an origin leaves, drops it from the ring', () => {
    const docs = project([
      recorded('OriginJoined', { id: 'o1', address: 'http://a:1' }),
      recorded('OriginJoined', { id: 'o2', address: 'http://b:1' }),
      recorded('OriginLeft', { id: 'o1' }),
    ]);
    expect(docs.has(`${placementPartitions.ring}/o1`)).toBe(false);
    expect(docs.has(`${placementPartitions.ring}/o2`)).toBe(true);
  });

  it('given placements, holds each digest’s origins once, in report order', () => {
    const docs = project([
      recorded('BlobPlaced', { digest, origin: 'o2' }),
      recorded('BlobPlaced', { digest, origin: 'o1' }),
      recorded('BlobPlaced', { digest, origin: 'o2' }),
    ]);
    expect(docs.get(`${placementPartitions.blobs}/${digest}`)).toEqual({ origins: ['o2', 'o1'] });
  });

  it('when a blob is deleted, forgets its holders', () => {
    const docs = project([
      recorded('BlobPlaced', { digest, origin: 'o1' }),
      recorded('BlobDeleted', { digest }),
    ]);
    expect(docs.size).toBe(0);
  });

  it('ignores events it does not declare', () => {
    const event = recorded('BlobPersisted', { digest, backend: 'fs' });
    expect(placementProjection.eventTypes).not.toContain(event.type);
    expect(placementProjection.keysOf(event)).toEqual([]);
  });
});

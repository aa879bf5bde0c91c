import { recorded } from '../../test/fixtures/projections';
import {
  collectedLife,
  currentLife,
  linkedAt,
  manifestLiveAt,
  pendingErasure,
  persistedIn,
  placedInLife,
  storedAt,
} from './streams';

const d = `sha256:${'a'.repeat(64)}`;
const gc = { run: 'gc-1', reason: 'unreferenced' as const, size: 3 };

describe('blob and manifest streams', () => {
  // 1 upload a/x, 2 placed o1, 3 persisted fs, 4 collected (eraser o1), 5 upload b/y,
  // 6 placed o2, 7 erased, 8 referenced.
  const events = recorded(
    ['BlobUploaded', { digest: d, size: 3, repo: 'a/x' }],
    ['BlobPlaced', { digest: d, origin: 'o1' }],
    ['BlobPersisted', { digest: d, backend: 'fs' }],
    ['BlobCollected', { digest: d, repos: ['a/x'], eraser: 'o1', ...gc }],
    ['BlobUploaded', { digest: d, size: 3, repo: 'b/y' }],
    ['BlobPlaced', { digest: d, origin: 'o2' }],
    ['BlobErased', { digest: d, collected: 4, origin: 'o1', backends: ['fs'] }],
    ['BlobReferenced', { digest: d, repo: 'b/y', manifest: d }],
  );

  it('a collection ends a life: links, copies and write-backs of the old one do not count', () => {
    expect(currentLife(events).map((e) => e.position)).toEqual([5, 6, 7, 8]);
    expect(linkedAt(events, 'a/x', 4)).toBe(true);
    expect(linkedAt(events, 'a/x', 8)).toBe(false);
    expect(linkedAt(events, 'b/y', 8)).toBe(true);
    expect(storedAt(events, 5)).toBe(false);
    expect(storedAt(events, 8)).toBe(true);
    expect(persistedIn(events)).toEqual([]);
    expect(placedInLife(events, 'o1')).toBe(false);
    expect(placedInLife(events, 'o2')).toBe(true);
  });

  it('an erasure is pending from the collection until the eraser records it', () => {
    expect(pendingErasure(events.slice(0, 6))).toEqual({ collected: 4, eraser: 'o1' });
    expect(pendingErasure(events)).toBeUndefined();
    expect(collectedLife(events)).toMatchObject({ repos: ['a/x'], backends: ['fs'] });
  });

  it('a manifest is live between its push and its deletion or collection', () => {
    const stream = recorded(
      ['ManifestPushed', { repo: 'a/x', digest: d, mediaType: 'm', size: 1, references: [] }],
      ['ManifestCollected', { repo: 'a/x', digest: d, size: 1, run: 'g', reason: 'untagged' }],
      ['ManifestReferenced', { repo: 'a/x', digest: d, by: d }],
    );
    expect(manifestLiveAt(stream, 2)).toBe(true);
    expect(manifestLiveAt(stream, 3)).toBe(false);
  });
});

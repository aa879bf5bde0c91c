import type { RecordedEvent } from '../domain';
import { given, recorded } from '../test/fixtures/projections';
import type { TagDoc } from './buildIndex';
import { buildIndexProjection } from './buildIndex';

const digest = (n: number) => `sha256:${String(n).repeat(64).slice(0, 64)}`;

describe('build-index projection', () => {
  it('when a tag is pushed, maps repo → tag → digest with position and time', () => {
    const docs = given(buildIndexProjection, [
      'TagPushed',
      { repo: 'lib/app', tag: 'v1', digest: digest(1) },
    ]);
    expect(docs.get('lib/app', 'v1')).toEqual<TagDoc>({
      digest: digest(1) as TagDoc['digest'],
      position: 1,
      at: '2026-01-01T00:00:00.000Z',
    });
  });

  it('given a tag, when it is pushed again, points it at the new digest', () => {
    const docs = given(
      buildIndexProjection,
      ['TagPushed', { repo: 'lib/app', tag: 'v1', digest: digest(1) }],
      ['TagPushed', { repo: 'lib/app', tag: 'v1', digest: digest(2), previous: digest(1) }],
    );
    expect(docs.get('lib/app', 'v1')).toMatchObject({ digest: digest(2), position: 2 });
    expect(docs.size).toBe(1);
  });

  it('given a tag, when it is deleted, forgets it; other tags and repos stay', () => {
    const docs = given(
      buildIndexProjection,
      ['TagPushed', { repo: 'lib/app', tag: 'v1', digest: digest(1) }],
      ['TagPushed', { repo: 'lib/app', tag: 'v2', digest: digest(2) }],
      ['TagPushed', { repo: 'lib/other', tag: 'v1', digest: digest(3) }],
      ['TagDeleted', { repo: 'lib/app', tag: 'v1', previous: digest(1) }],
    );
    expect(docs.size).toBe(2);
    expect(docs.ids('lib/app')).toEqual(['v2']);
    expect(docs.ids('lib/other')).toEqual(['v1']);
  });

  it('given a deleted tag, when it is pushed again, it is back', () => {
    const docs = given(
      buildIndexProjection,
      ['TagPushed', { repo: 'lib/app', tag: 'v1', digest: digest(1) }],
      ['TagDeleted', { repo: 'lib/app', tag: 'v1' }],
      ['TagPushed', { repo: 'lib/app', tag: 'v1', digest: digest(4) }],
    );
    expect(docs.get('lib/app', 'v1')).toMatchObject({ digest: digest(4), position: 3 });
  });

  it('ignores events of other types', () => {
    const events = recorded(['BlobUploaded', { digest: digest(1), size: 3, repo: 'lib/app' }]);
    expect(buildIndexProjection.keysOf(events[0] as RecordedEvent)).toEqual([]);
    expect(given(buildIndexProjection).apply(...events).size).toBe(0);
  });
});

import type { EventData, EventType, Projection, RecordedEvent } from '../domain';
import { docKeyString, makeEvent } from '../domain';
import type { TagDoc } from './buildIndex';
import { buildIndexProjection } from './buildIndex';

const digest = (n: number) => `sha256:${String(n).repeat(64).slice(0, 64)}`;

/** Events as the log hands them back: positions 1, 2, 3, … in the order given. */
const recorded = (...events: Array<[EventType, unknown, string?]>): RecordedEvent[] =>
  events.map(
    ([type, data, at], i) =>
      ({
        ...makeEvent(type, data as EventData<typeof type>, {
          id: `e${i + 1}`,
          metadata: { at: at ?? `2026-01-01T00:00:0${i}.000Z`, actor: 'test', cluster: 'c' },
        }),
        position: i + 1,
        streamVersion: 0,
      }) as RecordedEvent,
  );

/** Given events, the documents the projection holds (what the runner would store). */
const project = <D>(projection: Projection<D>, events: RecordedEvent[]) => {
  const docs = new Map<string, D>();
  for (const event of events) {
    if (!projection.eventTypes.includes(event.type)) continue;
    for (const key of projection.keysOf(event)) {
      const next = projection.evolve(docs.get(docKeyString(key)), event, key);
      if (next === undefined) docs.delete(docKeyString(key));
      else docs.set(docKeyString(key), next);
    }
  }
  return docs;
};

const tag = (repo: string, name: string) => docKeyString({ partition: repo, id: name });

describe('build-index projection', () => {
  it('when a tag is pushed, maps repo → tag → digest with position and time', () => {
    const docs = project(
      buildIndexProjection,
      recorded(['TagPushed', { repo: 'lib/app', tag: 'v1', digest: digest(1) }]),
    );
    expect(docs.get(tag('lib/app', 'v1'))).toEqual<TagDoc>({
      digest: digest(1) as TagDoc['digest'],
      position: 1,
      at: '2026-01-01T00:00:00.000Z',
    });
  });

  it('given a tag, when it is pushed again, points it at the new digest', () => {
    const docs = project(
      buildIndexProjection,
      recorded(
        ['TagPushed', { repo: 'lib/app', tag: 'v1', digest: digest(1) }],
        ['TagPushed', { repo: 'lib/app', tag: 'v1', digest: digest(2), previous: digest(1) }],
      ),
    );
    expect(docs.get(tag('lib/app', 'v1'))).toMatchObject({ digest: digest(2), position: 2 });
    expect(docs.size).toBe(1);
  });

  it('given a tag, when it is deleted, forgets it; other tags and repos stay', () => {
    const docs = project(
      buildIndexProjection,
      recorded(
        ['TagPushed', { repo: 'lib/app', tag: 'v1', digest: digest(1) }],
        ['TagPushed', { repo: 'lib/app', tag: 'v2', digest: digest(2) }],
        ['TagPushed', { repo: 'lib/other', tag: 'v1', digest: digest(3) }],
        ['TagDeleted', { repo: 'lib/app', tag: 'v1', previous: digest(1) }],
      ),
    );
    expect([...docs.keys()].sort()).toEqual([tag('lib/app', 'v2'), tag('lib/other', 'v1')]);
  });

  it('given a deleted tag, when it is pushed again, it is back', () => {
    const docs = project(
      buildIndexProjection,
      recorded(
        ['TagPushed', { repo: 'lib/app', tag: 'v1', digest: digest(1) }],
        ['TagDeleted', { repo: 'lib/app', tag: 'v1' }],
        ['TagPushed', { repo: 'lib/app', tag: 'v1', digest: digest(4) }],
      ),
    );
    expect(docs.get(tag('lib/app', 'v1'))).toMatchObject({ digest: digest(4), position: 3 });
  });

  it('ignores events of other types', () => {
    const events = recorded(['BlobUploaded', { digest: digest(1), size: 3, repo: 'lib/app' }]);
    expect(buildIndexProjection.keysOf(events[0] as RecordedEvent)).toEqual([]);
    expect(project(buildIndexProjection, events).size).toBe(0);
  });
});

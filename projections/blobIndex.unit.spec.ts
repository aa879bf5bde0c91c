import type { EventData, EventType, RecordedEvent } from '../domain';
import { docKeyString, makeEvent } from '../domain';
import type { BlobDoc } from './blobIndex';
import { blobIndexProjection, blobPartition } from './blobIndex';

const digest = (n: number) => `sha256:${String(n).repeat(64).slice(0, 64)}`;

const recorded = (...events: Array<[EventType, unknown]>): RecordedEvent[] =>
  events.map(
    ([type, data], i) =>
      ({
        ...makeEvent(type, data as EventData<typeof type>, {
          id: `e${i + 1}`,
          metadata: { at: '2026-01-01T00:00:00Z', actor: 'test', cluster: 'c' },
        }),
        position: i + 1,
        streamVersion: i,
      }) as RecordedEvent,
  );

const project = (events: RecordedEvent[]) => {
  const docs = new Map<string, BlobDoc>();
  for (const event of events) {
    if (!blobIndexProjection.eventTypes.includes(event.type)) continue;
    for (const key of blobIndexProjection.keysOf(event)) {
      const next = blobIndexProjection.evolve(docs.get(docKeyString(key)), event, key);
      if (next === undefined) docs.delete(docKeyString(key));
      else docs.set(docKeyString(key), next);
    }
  }
  return docs;
};

const blob = (n: number) => docKeyString({ partition: blobPartition, id: digest(n) });

describe('blob-index projection', () => {
  it('when a blob is uploaded, records size, media type and repository', () => {
    const docs = project(
      recorded([
        'BlobUploaded',
        { digest: digest(1), size: 1234, mediaType: 'application/octet-stream', repo: 'lib/a' },
      ]),
    );
    expect(docs.get(blob(1))).toEqual<BlobDoc>({
      size: 1234,
      mediaType: 'application/octet-stream',
      repos: ['lib/a'],
      origins: [],
      backends: [],
    });
  });

  it('given an upload, when pushed elsewhere, placed and persisted, lists each once', () => {
    const docs = project(
      recorded(
        ['BlobUploaded', { digest: digest(1), size: 10, repo: 'lib/a' }],
        ['BlobPlaced', { digest: digest(1), origin: 'o1' }],
        ['BlobUploaded', { digest: digest(1), size: 10, repo: 'lib/b' }],
        ['BlobPlaced', { digest: digest(1), origin: 'o2' }],
        ['BlobPlaced', { digest: digest(1), origin: 'o1' }],
        ['BlobPersisted', { digest: digest(1), backend: 's3' }],
        ['BlobUploaded', { digest: digest(1), size: 10, repo: 'lib/a' }],
        ['BlobPersisted', { digest: digest(1), backend: 's3' }],
      ),
    );
    expect(docs.get(blob(1))).toEqual({
      size: 10,
      repos: ['lib/a', 'lib/b'],
      origins: ['o1', 'o2'],
      backends: ['s3'],
    });
  });

  it('when a blob is placed before its upload is recorded, still knows where it is', () => {
    const docs = project(recorded(['BlobPlaced', { digest: digest(2), origin: 'o1' }]));
    expect(docs.get(blob(2))).toMatchObject({ origins: ['o1'], repos: [] });
  });

  it('given a blob, when it is deleted, forgets it; other blobs stay', () => {
    const docs = project(
      recorded(
        ['BlobUploaded', { digest: digest(1), size: 10, repo: 'lib/a' }],
        ['BlobUploaded', { digest: digest(2), size: 20, repo: 'lib/a' }],
        ['BlobDeleted', { digest: digest(1) }],
      ),
    );
    expect([...docs.keys()]).toEqual([blob(2)]);
  });

  it('ignores events of other types', () => {
    const [event] = recorded(['TagPushed', { repo: 'lib/a', tag: 'v1', digest: digest(1) }]);
    expect(blobIndexProjection.keysOf(event as RecordedEvent)).toEqual([]);
  });
});

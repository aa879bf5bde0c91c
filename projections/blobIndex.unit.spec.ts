import type { RecordedEvent } from '../domain';
import { given, recorded } from '../test/fixtures/projections';
import type { BlobDoc } from './blobIndex';
import { blobIndexProjection, blobPartition } from './blobIndex';

const digest = (n: number) => `sha256:${String(n).repeat(64).slice(0, 64)}`;

describe('blob-index projection', () => {
  it('when a blob is uploaded, records size, media type and repository', () => {
    const docs = given(blobIndexProjection, [
      'BlobUploaded',
      { digest: digest(1), size: 1234, mediaType: 'application/octet-stream', repo: 'lib/a' },
    ]);
    expect(docs.get(blobPartition, digest(1))).toEqual<BlobDoc>({
      size: 1234,
      mediaType: 'application/octet-stream',
      repos: ['lib/a'],
      origins: [],
      backends: [],
    });
  });

  it('given an upload, when pushed elsewhere, placed and persisted, lists each once', () => {
    const docs = given(
      blobIndexProjection,
      ['BlobUploaded', { digest: digest(1), size: 10, repo: 'lib/a' }],
      ['BlobPlaced', { digest: digest(1), origin: 'o1' }],
      ['BlobUploaded', { digest: digest(1), size: 10, repo: 'lib/b' }],
      ['BlobPlaced', { digest: digest(1), origin: 'o2' }],
      ['BlobPlaced', { digest: digest(1), origin: 'o1' }],
      ['BlobPersisted', { digest: digest(1), backend: 's3' }],
      ['BlobUploaded', { digest: digest(1), size: 10, repo: 'lib/a' }],
      ['BlobPersisted', { digest: digest(1), backend: 's3' }],
    );
    expect(docs.get(blobPartition, digest(1))).toEqual({
      size: 10,
      repos: ['lib/a', 'lib/b'],
      origins: ['o1', 'o2'],
      backends: ['s3'],
    });
  });

  it('when an origin releases its copy, lists the others only', () => {
    const docs = given(
      blobIndexProjection,
      ['BlobUploaded', { digest: digest(3), size: 7, repo: 'lib/a' }],
      ['BlobPlaced', { digest: digest(3), origin: 'o1' }],
      ['BlobPlaced', { digest: digest(3), origin: 'o2' }],
      ['BlobReleased', { digest: digest(3), origin: 'o1' }],
    );
    expect(docs.get(blobPartition, digest(3))).toMatchObject({ origins: ['o2'] });
  });

  it('when a blob is placed before its upload is recorded, still knows where it is', () => {
    const docs = given(blobIndexProjection, ['BlobPlaced', { digest: digest(2), origin: 'o1' }]);
    expect(docs.get(blobPartition, digest(2))).toMatchObject({ origins: ['o1'], repos: [] });
  });

  it('given a blob, when it is deleted, forgets it; other blobs stay', () => {
    const docs = given(
      blobIndexProjection,
      ['BlobUploaded', { digest: digest(1), size: 10, repo: 'lib/a' }],
      ['BlobUploaded', { digest: digest(2), size: 20, repo: 'lib/a' }],
      ['BlobDeleted', { digest: digest(1) }],
    );
    expect(docs.size).toBe(1);
    expect(docs.ids(blobPartition)).toEqual([digest(2)]);
  });

  it('ignores events of other types', () => {
    const [event] = recorded(['TagPushed', { repo: 'lib/a', tag: 'v1', digest: digest(1) }]);
    expect(blobIndexProjection.keysOf(event as RecordedEvent)).toEqual([]);
  });
});

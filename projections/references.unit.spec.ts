import { given } from '../test/fixtures/projections';
import type { BlobRefDoc, ManifestRefDoc, ReferencesDoc, UsageDoc } from './references';
import { referencesKeys as keys, referencesProjection } from './references';

const d = (c: string) => `sha256:${c.repeat(64)}`;
const image = 'application/vnd.oci.image.manifest.v1+json';
const index = 'application/vnd.oci.image.index.v1+json';
const run = { run: 'gc-1', reason: 'unreferenced' as const };

const get = <D extends ReferencesDoc>(
  state: ReturnType<typeof given<ReferencesDoc>>,
  key: { partition: string; id: string },
) => state.get(key.partition, key.id) as D | undefined;

describe('references projection', () => {
  it('records an image with its blobs, its tags by last push, and its users', () => {
    const state = given(
      referencesProjection,
      ['BlobUploaded', { digest: d('c'), size: 10, repo: 'a/app' }],
      ['BlobUploaded', { digest: d('l'), size: 90, repo: 'a/app' }],
      ['BlobReferenced', { digest: d('l'), repo: 'a/app', manifest: d('1') }],
      [
        'ManifestPushed',
        { repo: 'a/app', digest: d('1'), mediaType: image, size: 5, references: [d('c'), d('l')] },
      ],
      ['TagPushed', { repo: 'a/app', tag: 'v1', digest: d('1') }],
    );
    expect(get<ManifestRefDoc>(state, keys.manifest('a/app', d('1')))).toEqual({
      manifest: { mediaType: image, size: 5, blobs: [d('c'), d('l')], manifests: [] },
      tags: { v1: { position: 5, at: '2026-01-01T00:00:04.000Z' } },
      touched: { position: 4, at: '2026-01-01T00:00:03.000Z' },
    });
    expect(get<BlobRefDoc>(state, keys.blob(d('l')))?.touched.position).toBe(3);
    expect(state.ids(`~usedby/${d('l')}`)).toEqual([`a/app@${d('1')}`]);

    // The tag moves away: the old manifest loses it, the new one has it.
    state.when('TagPushed', { repo: 'a/app', tag: 'v1', digest: d('2'), previous: d('1') });
    expect(get<ManifestRefDoc>(state, keys.manifest('a/app', d('1')))?.tags).toEqual({});
    expect(
      Object.keys(get<ManifestRefDoc>(state, keys.manifest('a/app', d('2')))?.tags ?? {}),
    ).toEqual(['v1']);
  });

  it('sorts an index’s references into child manifests', () => {
    const state = given(referencesProjection, [
      'ManifestPushed',
      { repo: 'a/app', digest: d('i'), mediaType: index, size: 5, references: [d('1'), d('2')] },
    ]);
    expect(get<ManifestRefDoc>(state, keys.manifest('a/app', d('i')))?.manifest).toMatchObject({
      blobs: [],
      manifests: [d('1'), d('2')],
    });
  });

  it('counts a blob once per namespace, however many of its repositories link it', () => {
    const state = given(
      referencesProjection,
      ['BlobUploaded', { digest: d('1'), size: 100, repo: 'team/a' }],
      ['BlobUploaded', { digest: d('1'), size: 100, repo: 'team/b' }],
      ['BlobUploaded', { digest: d('2'), size: 50, repo: 'team/b' }],
    );
    expect(get<UsageDoc>(state, keys.usage('team'))).toEqual({ bytes: 150, blobs: 2 });
    expect(get<UsageDoc>(state, keys.usage('team/a'))).toEqual({ bytes: 100, blobs: 1 });
    expect(get<UsageDoc>(state, keys.usage('team/b'))).toEqual({ bytes: 150, blobs: 2 });

    state.when('BlobUnlinked', { digest: d('1'), repo: 'team/a', size: 100, ...run });
    expect(get<UsageDoc>(state, keys.usage('team'))).toEqual({ bytes: 150, blobs: 2 });
    expect(get<UsageDoc>(state, keys.usage('team/a'))).toBeUndefined();
    expect(Object.keys(get<BlobRefDoc>(state, keys.blob(d('1')))?.links ?? {})).toEqual(['team/b']);

    state.when('BlobCollected', { digest: d('1'), size: 100, repos: ['team/b'], ...run });
    expect(get<UsageDoc>(state, keys.usage('team'))).toEqual({ bytes: 50, blobs: 1 });
    expect(get<BlobRefDoc>(state, keys.blob(d('1')))).toBeUndefined();
  });

  it('forgets collected manifests but keeps tags that still point at the digest', () => {
    const state = given(
      referencesProjection,
      [
        'ManifestPushed',
        { repo: 'a/app', digest: d('1'), mediaType: image, size: 5, references: [d('c')] },
      ],
      ['ManifestReferenced', { repo: 'a/app', digest: d('1'), by: d('i') }],
    );
    expect(get<ManifestRefDoc>(state, keys.manifest('a/app', d('1')))?.touched?.position).toBe(2);
    state.when('ManifestCollected', {
      repo: 'a/app',
      digest: d('1'),
      size: 5,
      references: [d('c')],
      run: 'gc-1',
      reason: 'untagged',
    });
    expect(state.size).toBe(0);
  });

  it('a client delete marks the blob, a later link revives it', () => {
    const state = given(
      referencesProjection,
      ['BlobUploaded', { digest: d('1'), size: 10, repo: 'a/app' }],
      ['BlobDeleted', { digest: d('1') }],
    );
    expect(get<BlobRefDoc>(state, keys.blob(d('1')))?.deleted).toBe(2);
    state.when('BlobUploaded', { digest: d('1'), size: 10, repo: 'a/app' });
    expect(get<BlobRefDoc>(state, keys.blob(d('1')))?.links['a/app']?.position).toBe(3);
  });
});

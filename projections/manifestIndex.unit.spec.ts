import { given } from '../test/fixtures/projections';
import type { BlobLinkDoc, DeletedDoc } from './manifestIndex';
import { isLinked, manifestIndexKeys as keys, manifestIndexProjection } from './manifestIndex';

const d = (c: string) => `sha256:${c.repeat(64)}`;

describe('manifest-index projection', () => {
  it('records a pushed manifest with its subject as a referrer, and forgets both on delete', () => {
    const state = given(manifestIndexProjection);
    state.when('ManifestPushed', {
      repo: 'a/b',
      digest: d('1'),
      mediaType: 'application/vnd.oci.image.manifest.v1+json',
      size: 100,
      references: [d('2'), d('3')],
      subject: d('9'),
      artifactType: 'application/vnd.example',
      annotations: { note: 'x' },
    });
    expect(state.get('a/b', d('1'))).toMatchObject({ size: 100, subject: d('9'), position: 1 });
    expect(state.get(keys.referrers('a/b', d('9')), d('1'))).toEqual({
      mediaType: 'application/vnd.oci.image.manifest.v1+json',
      digest: d('1'),
      size: 100,
      artifactType: 'application/vnd.example',
      annotations: { note: 'x' },
    });
    expect(state.ids(keys.usedBy(d('2')))).toEqual([`a/b@${d('1')}`]);

    state.when('ManifestDeleted', {
      repo: 'a/b',
      digest: d('1'),
      references: [d('2'), d('3')],
      subject: d('9'),
    });
    expect(state.get('a/b', d('1'))).toBeUndefined();
    expect(state.ids(keys.referrers('a/b', d('9')))).toEqual([]);
    expect(state.ids(keys.usedBy(d('2')))).toEqual([]);
  });

  it('links uploaded and mounted blobs to repositories until a later BlobDeleted', () => {
    const state = given(manifestIndexProjection);
    state.when('BlobUploaded', { digest: d('5'), size: 3, repo: 'a/b' });
    state.when('BlobUploaded', { digest: d('5'), size: 3, repo: 'c' }); // a mount
    const linked = (repo: string) =>
      isLinked(
        state.get(keys.blobLink(repo, d('5')).partition, d('5')) as BlobLinkDoc,
        state.get('~deleted', d('5')) as DeletedDoc | undefined,
      );
    expect([linked('a/b'), linked('c'), linked('x')]).toEqual([true, true, false]);
    expect(state.ids(keys.blobRepos(d('5')))).toEqual(['a/b', 'c']);

    state.when('BlobDeleted', { digest: d('5') });
    expect([linked('a/b'), linked('c')]).toEqual([false, false]);
    state.when('BlobUploaded', { digest: d('5'), size: 3, repo: 'c' });
    expect([linked('a/b'), linked('c')]).toEqual([false, true]);
  });

  it('knows which tags point at a manifest as tags move and go', () => {
    const state = given(manifestIndexProjection);
    state.when('TagPushed', { repo: 'a', tag: 'latest', digest: d('1') });
    state.when('TagPushed', { repo: 'a', tag: 'v1', digest: d('1') });
    expect(state.ids(keys.tagsOf('a', d('1')))).toEqual(['latest', 'v1']);
    state.when('TagPushed', { repo: 'a', tag: 'latest', digest: d('2'), previous: d('1') });
    expect(state.ids(keys.tagsOf('a', d('1')))).toEqual(['v1']);
    expect(state.ids(keys.tagsOf('a', d('2')))).toEqual(['latest']);
    state.when('TagDeleted', { repo: 'a', tag: 'v1', previous: d('1') });
    expect(state.ids(keys.tagsOf('a', d('1')))).toEqual([]);
  });
});

import { given } from '../test/fixtures/projections';
import type { ReferrerEntryDoc } from './referrers';
import { referrersPartition, referrersProjection } from './referrers';

const d = (c: string) => `sha256:${c.repeat(64)}`;
const image = 'application/vnd.oci.image.manifest.v1+json';

describe('referrers projection', () => {
  it('lists a subject’s referrers with their types; a delete or GC removes one', () => {
    const state = given(
      referrersProjection,
      [
        'ManifestPushed',
        { repo: 'a/app', digest: d('s'), mediaType: image, size: 9, references: [] },
      ],
      [
        'ManifestPushed',
        {
          repo: 'a/app',
          digest: d('1'),
          mediaType: image,
          size: 5,
          references: [],
          subject: d('s'),
          artifactType: 'application/vnd.dev.cosign.artifact.sig.v1+json',
        },
      ],
      [
        'ManifestPushed',
        {
          repo: 'a/app',
          digest: d('2'),
          mediaType: image,
          size: 6,
          references: [],
          subject: d('s'),
        },
      ],
    );
    const partition = referrersPartition('a/app', d('s'));
    expect(state.ids(partition)).toEqual([d('1'), d('2')]);
    expect(state.get(partition, d('1')) as ReferrerEntryDoc).toEqual({
      mediaType: image,
      size: 5,
      artifactType: 'application/vnd.dev.cosign.artifact.sig.v1+json',
      position: 2,
    });
    // The subject itself has no subject: no document for it anywhere.
    expect(state.ids(referrersPartition('a/app', d('1')))).toEqual([]);

    state.when('ManifestDeleted', { repo: 'a/app', digest: d('1'), subject: d('s') });
    state.when('ManifestCollected', {
      repo: 'a/app',
      digest: d('2'),
      size: 6,
      subject: d('s'),
      run: 'gc-1',
      reason: 'untagged',
    });
    expect(state.ids(partition)).toEqual([]);
  });
});

import { parseV2Path } from './parseV2Path';

describe('parseV2Path', () => {
  it.each([
    ['', 'GET', { kind: 'ping' }],
    ['_catalog', 'GET', { kind: 'catalog' }],
    ['a/b/tags/list', 'GET', { kind: 'tags', repo: 'a/b' }],
    ['a/b/manifests/v1', 'PUT', { kind: 'manifest', repo: 'a/b', reference: 'v1' }],
    ['a/referrers/sha256:x', 'GET', { kind: 'referrers', repo: 'a', digest: 'sha256:x' }],
    ['a/b/blobs/uploads/', 'POST', { kind: 'uploads', repo: 'a/b' }],
    ['a/b/blobs/uploads', 'POST', { kind: 'uploads', repo: 'a/b' }],
    ['a/b/blobs/uploads/abc-1', 'PATCH', { kind: 'upload', repo: 'a/b', id: 'abc-1' }],
    ['a/blobs/sha256:1', 'GET', { kind: 'blob', repo: 'a', digest: 'sha256:1' }],
    // Names may contain the words that separate the parts: the last separator wins.
    [
      'tags/manifests/manifests/v1',
      'GET',
      { kind: 'manifest', repo: 'tags/manifests', reference: 'v1' },
    ],
    [
      'x/blobs/uploads/blobs/sha256:1',
      'GET',
      { kind: 'blob', repo: 'x/blobs/uploads', digest: 'sha256:1' },
    ],
  ])('%s (%s)', (path, method, want) => {
    expect(parseV2Path(path, method)).toEqual(want);
  });

  it('refuses a bad repository name with NAME_INVALID and an unknown shape with NAME_UNKNOWN', () => {
    expect(() => parseV2Path('Bad/manifests/v1', 'GET')).toThrow(
      expect.objectContaining({ code: 'NAME_INVALID' }),
    );
    expect(() => parseV2Path('a/b/c', 'GET')).toThrow(
      expect.objectContaining({ code: 'NAME_UNKNOWN' }),
    );
  });
});

import type { Digest } from '../oci/digest';
import {
  blobObjectName,
  digestOfObjectName,
  parseObjectName,
  parseObjectPrefix,
  resolveRange,
} from './blobStore';

const digest = `sha256:ab${'c'.repeat(62)}` as Digest;

describe('blob object names', () => {
  it('shards content-addressed names by the first two hex characters', () => {
    expect(blobObjectName(digest)).toBe(`blobs/sha256/ab/ab${'c'.repeat(62)}`);
    expect(blobObjectName(digest, 'cluster-a/')).toBe(
      `cluster-a/blobs/sha256/ab/ab${'c'.repeat(62)}`,
    );
  });

  it('maps names back to digests, and nothing else', () => {
    expect(digestOfObjectName(blobObjectName(digest))).toBe(digest);
    expect(digestOfObjectName(blobObjectName(digest, 'p/'), 'p/')).toBe(digest);
    expect(digestOfObjectName(`blobs/sha256/zz/ab${'c'.repeat(62)}`)).toBeUndefined();
    expect(digestOfObjectName('blobs/sha256/ab/abc')).toBeUndefined();
    expect(digestOfObjectName('other/thing')).toBeUndefined();
  });

  it('accepts safe names and prefixes only', () => {
    expect(parseObjectName('a/b-c/d_e.f').ok).toBe(true);
    for (const bad of ['', '/a', 'a/', 'a//b', '..', 'a/../b', '.x', 'a b', 'a\\b', 'é']) {
      expect(parseObjectName(bad).ok).toBe(false);
    }
    expect(parseObjectPrefix('')).toEqual({ ok: true, value: '' });
    expect(parseObjectPrefix('team/x')).toEqual({ ok: true, value: 'team/x/' });
    expect(parseObjectPrefix('../x').ok).toBe(false);
  });
});

describe('resolveRange', () => {
  it('resolves whole, bounded, open and clamped ranges', () => {
    expect(resolveRange(10, undefined)).toEqual({ ok: true, value: { start: 0, end: 9 } });
    expect(resolveRange(0, undefined)).toEqual({ ok: true, value: { start: 0, end: -1 } });
    expect(resolveRange(10, { start: 2, end: 4 })).toEqual({
      ok: true,
      value: { start: 2, end: 4 },
    });
    expect(resolveRange(10, { start: 2 })).toEqual({ ok: true, value: { start: 2, end: 9 } });
    expect(resolveRange(10, { start: 2, end: 99 })).toEqual({
      ok: true,
      value: { start: 2, end: 9 },
    });
  });

  it('refuses unsatisfiable ranges with RANGE_INVALID', () => {
    for (const range of [{ start: 10 }, { start: 5, end: 4 }, { start: -1 }, { start: 0.5 }]) {
      const result = resolveRange(10, range);
      expect(result.ok).toBe(false);
      if (!result.ok) expect(result.error.code).toBe('RANGE_INVALID');
    }
    expect(resolveRange(0, { start: 0 }).ok).toBe(false);
  });
});

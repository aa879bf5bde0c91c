import { createManifestCache } from './manifestCache';

const bytes = (n: number) => Buffer.alloc(n, 1);

describe('manifest cache', () => {
  it('drops the least recently used manifests once the bytes exceed the bound', () => {
    const cache = createManifestCache(100);
    cache.set('a', bytes(40));
    cache.set('b', bytes(40));
    expect(cache.get('a')).toBeDefined();
    cache.set('c', bytes(40));
    expect(cache.get('b')).toBeUndefined();
    expect(cache.get('a')).toBeDefined();
    expect(cache.get('c')).toBeDefined();
  });

  it('keeps nothing larger than the bound, and forgets a deleted manifest', () => {
    const cache = createManifestCache(100);
    cache.set('big', bytes(101));
    expect(cache.get('big')).toBeUndefined();
    cache.set('a', bytes(10));
    cache.delete('a');
    expect(cache.get('a')).toBeUndefined();
  });

  it('counts the bytes of records that hold them', () => {
    const cache = createManifestCache<{ bytes: Buffer; mediaType: string }>(100);
    cache.set('a', { bytes: bytes(60), mediaType: 'x' });
    cache.set('b', { bytes: bytes(60), mediaType: 'y' });
    expect(cache.get('a')).toBeUndefined();
    expect(cache.get('b')?.mediaType).toBe('y');
  });
});

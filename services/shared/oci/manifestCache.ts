/**
 * Manifests by digest, least recently used first out, bounded by their total size in bytes.
 * Content addressed, so entries never go stale; a deleted manifest is dropped to free the
 * space. A value is the manifest's bytes, or a record holding them (`bytes`) with what the
 * holder wants beside them (the agent keeps the media type).
 */
export const createManifestCache = <V extends Buffer | { readonly bytes: Buffer } = Buffer>(
  maxBytes: number,
) => {
  const sizeOf = (value: V) => (Buffer.isBuffer(value) ? value.length : value.bytes.length);
  const entries = new Map<string, V>();
  let total = 0;
  const drop = (digest: string) => {
    const old = entries.get(digest);
    if (old === undefined) return;
    entries.delete(digest);
    total -= sizeOf(old);
  };
  return {
    get: (digest: string): V | undefined => {
      const value = entries.get(digest);
      if (value !== undefined) {
        entries.delete(digest);
        entries.set(digest, value);
      }
      return value;
    },
    set: (digest: string, value: V) => {
      const size = sizeOf(value);
      if (size > maxBytes) return;
      drop(digest);
      entries.set(digest, value);
      total += size;
      for (const oldest of entries.keys()) {
        if (total <= maxBytes) break;
        drop(oldest);
      }
    },
    delete: drop,
  };
};

export type ManifestCache<V extends Buffer | { readonly bytes: Buffer } = Buffer> = ReturnType<
  typeof createManifestCache<V>
>;

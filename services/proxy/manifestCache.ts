/**
 * Manifest bytes by digest, least recently used first out, bounded by total size. Content
 * addressed, so entries never go stale; a deleted manifest is dropped to free the space.
 */
export const createManifestCache = (maxBytes: number) => {
  const entries = new Map<string, Buffer>();
  let total = 0;
  const drop = (digest: string) => {
    const old = entries.get(digest);
    if (old === undefined) return;
    entries.delete(digest);
    total -= old.length;
  };
  return {
    get: (digest: string): Buffer | undefined => {
      const bytes = entries.get(digest);
      if (bytes !== undefined) {
        entries.delete(digest);
        entries.set(digest, bytes);
      }
      return bytes;
    },
    set: (digest: string, bytes: Buffer) => {
      if (bytes.length > maxBytes) return;
      drop(digest);
      entries.set(digest, bytes);
      total += bytes.length;
      for (const oldest of entries.keys()) {
        if (total <= maxBytes) break;
        drop(oldest);
      }
    },
    delete: drop,
  };
};

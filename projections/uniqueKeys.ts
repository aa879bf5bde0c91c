import type { DocKey } from '../domain';

/** The keys without repeats, first occurrence kept: an event evolves each document once. */
export const uniqueKeys = (keys: readonly DocKey[]): DocKey[] => {
  const seen = new Set<string>();
  return keys.filter((key) => {
    const s = `${key.partition}\u0000${key.id}`;
    if (seen.has(s)) return false;
    seen.add(s);
    return true;
  });
};

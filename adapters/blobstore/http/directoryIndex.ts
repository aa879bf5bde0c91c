import { orThrow, parseObjectName, parseObjectPrefix } from '../../../domain';

// Listing an http store: a walk of nginx's JSON directory index, in code-point order.

/** An entry of a JSON directory index as nginx writes it (`autoindex_format json`). */
export type IndexEntry = { readonly name?: unknown; readonly type?: unknown };

export async function* listIndex(
  base: string,
  prefix: string,
  fetchIndex: (url: URL) => Promise<IndexEntry[] | undefined>,
): AsyncGenerator<string> {
  // Start at the deepest directory the prefix names completely; filter the rest by string.
  const slash = prefix.lastIndexOf('/');
  const dir = slash === -1 ? '' : orThrow(parseObjectPrefix(prefix.slice(0, slash)));
  yield* walkIndex(base, dir, prefix, fetchIndex);
}

async function* walkIndex(
  base: string,
  dir: string,
  prefix: string,
  fetchIndex: (url: URL) => Promise<IndexEntry[] | undefined>,
): AsyncGenerator<string> {
  const entries = await fetchIndex(new URL(`${base}${dir}`));
  if (entries === undefined || !Array.isArray(entries)) return;
  // Directories sort as `name/`, so the walk yields whole names in code-point order.
  const keyed = entries
    .filter(
      (e): e is { name: string; type: string } =>
        typeof e.name === 'string' &&
        (e.type === 'file' || e.type === 'directory') &&
        parseObjectName(e.name).ok &&
        !e.name.includes('/'),
    )
    .map((e) => ({ name: `${dir}${e.name}`, dir: e.type === 'directory' }))
    .map((e) => ({ ...e, key: e.dir ? `${e.name}/` : e.name }))
    .sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0));
  for (const entry of keyed) {
    if (entry.dir) {
      if (entry.key.startsWith(prefix) || prefix.startsWith(entry.key)) {
        yield* walkIndex(base, entry.key, prefix, fetchIndex);
      }
    } else if (entry.name.startsWith(prefix)) {
      yield entry.name;
    }
  }
}

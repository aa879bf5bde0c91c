import type { TSchema } from '@sinclair/typebox';
import type { ValueError } from '@sinclair/typebox/value';
import { ValueErrorType } from '@sinclair/typebox/value';
import { distance } from 'fastest-levenshtein';
import { configKeys, literalValues, nodeAt } from './configKeys';

// Config errors a person can act on: the key that is wrong, why, and what was probably
// meant — the closest valid key (`did you mean \`port\`?`) or the allowed values.

const show = (value: unknown): string =>
  typeof value === 'string' ? value : JSON.stringify(value);

/** The candidate closest to `word`, if it is close enough to be a likely typo. */
export const closestMatch = (word: string, candidates: readonly string[]): string | undefined => {
  let best: string | undefined;
  let bestDistance = Infinity;
  for (const candidate of candidates) {
    const d = distance(word.toLowerCase(), candidate.toLowerCase());
    if (d < bestDistance) {
      best = candidate;
      bestDistance = d;
    }
  }
  // Up to a third of the word, at least 2 (a transposed pair: `prot` → `port`).
  return bestDistance <= Math.max(2, Math.floor(word.length / 3)) ? best : undefined;
};

const dotted = (path: readonly string[]) => path.join('.');

/** A value as an error shows it; never the value of a key that may hold a secret. */
const shown = (path: readonly string[], value: unknown): string => {
  if (typeof value === 'number' || typeof value === 'boolean') return String(value);
  if (typeof value === 'string' && !/pass|secret|token|credential|key/i.test(dotted(path))) {
    return JSON.stringify(value.length > 80 ? `${value.slice(0, 80)}…` : value);
  }
  if (Array.isArray(value)) return 'a list';
  return value === null || value === undefined ? String(value) : `a ${typeof value}`;
};

/** `did you mean …?` for an unknown key at `path` (its parent's keys, or a key elsewhere). */
const suggestKey = (schema: TSchema, path: readonly string[]): string => {
  const key = path[path.length - 1] ?? '';
  const parentPath = path.slice(0, -1);
  const parent = nodeAt(schema, parentPath);
  const siblings = Object.keys((parent?.properties as Record<string, TSchema> | undefined) ?? {});
  const near = closestMatch(key, siblings);
  if (near !== undefined) return `; did you mean \`${dotted([...parentPath, near])}\`?`;
  // The right key in the wrong place (`port:` at the top instead of under `listen:`).
  const elsewhere = configKeys(schema)
    .map((k) => k.path)
    .filter((p) => p[p.length - 1]?.toLowerCase() === key.toLowerCase());
  if (elsewhere.length > 0) {
    return `; did you mean ${elsewhere.map((p) => `\`${dotted(p)}\``).join(' or ')}?`;
  }
  const where = parentPath.length === 0 ? 'at the top level' : `under ${dotted(parentPath)}`;
  return siblings.length > 0 ? ` (keys ${where}: ${siblings.join(', ')})` : '';
};

const pathOf = (error: ValueError): string[] =>
  error.path
    .split('/')
    .slice(1)
    .map((s) => s.replace(/~1/g, '/').replace(/~0/g, '~'));

/**
 * One line per problem: `listen.prot: unknown key; did you mean \`listen.port\`?`,
 * `log.adapter: "kafak" is not one of sqlite, kafka, eventstoredb; did you mean \`kafka\`?`.
 * `sourceOf` names where a value came from (an environment variable) when not the file.
 */
export const explainConfigErrors = (
  schema: TSchema,
  errors: Iterable<ValueError>,
  sourceOf: (path: readonly string[]) => string | undefined = () => undefined,
): string[] => {
  const lines: string[] = [];
  const seen = new Set<string>();
  for (const error of errors) {
    const path = pathOf(error);
    const where = dotted(path) || '(top level)';
    const from = sourceOf(path);
    const origin = from === undefined ? '' : ` (from ${from})`;
    let line: string;
    if (error.type === ValueErrorType.ObjectAdditionalProperties) {
      line = `${where}: unknown key${suggestKey(schema, path)}`;
    } else if (error.type === ValueErrorType.Union && literalValues(error.schema) !== undefined) {
      const values = (literalValues(error.schema) ?? []).map(show);
      const near =
        typeof error.value === 'string' ? closestMatch(error.value, values as string[]) : undefined;
      line =
        `${where}: ${JSON.stringify(error.value)}${origin} is not one of ${values.join(', ')}` +
        (near === undefined ? '' : `; did you mean \`${near}\`?`);
    } else {
      line = `${where}: ${error.message.toLowerCase()}${origin}, got ${shown(path, error.value)}`;
    }
    // A union reports once per member; one line per key is enough.
    if (seen.has(where)) continue;
    seen.add(where);
    lines.push(line);
  }
  return lines;
};

import { createHash } from 'node:crypto';
import type { Position } from '../../domain';
import { ShoalError } from '../../domain';

// Rules shared by the ProjectionStore adapters, so they order, digest and fail alike.

/**
 * `digest` means the same in every adapter: a live SQLite store and a scratch memory store
 * holding the same documents agree. Format 1: sha256 over a header line, then one line per
 * document in (partition, id) order, `partition NUL id NUL canonical-json LF`. Partitions and
 * ids never contain NUL (`docKeyString`), and JSON text never contains a raw LF, so the
 * framing is unambiguous.
 */
export const docDigestHeader = 'shoal-projection-digest/1\n';

/**
 * Orders strings by Unicode code point, as SQLite's BINARY collation orders UTF-8 text.
 * JavaScript's `<` compares UTF-16 code units, which disagrees for characters above U+FFFF
 * against U+E000–U+FFFF; this corrects the first differing unit in that case only.
 */
export const compareCodePoints = (a: string, b: string): number => {
  if (a === b) return 0;
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i++) {
    const x = a.charCodeAt(i);
    const y = b.charCodeAt(i);
    if (x !== y) {
      if (x >= 0xd800 && y >= 0xd800) return surrogateAware(x) - surrogateAware(y);
      return x - y;
    }
  }
  return a.length - b.length;
};

/** Lifts surrogates (U+D800–U+DFFF) above U+E000–U+FFFF, as their code points are. */
const surrogateAware = (unit: number): number =>
  unit >= 0xe000 ? unit - 0x800 : unit <= 0xdfff ? unit + 0x2000 : unit;

/** JSON with object keys sorted by code point at every level: equal values, equal text. */
export const canonicalJson = (value: unknown): string => {
  if (value === null || typeof value !== 'object') {
    // `undefined`, functions and symbols do not survive a store; JSON has no text for them.
    return JSON.stringify(value) ?? 'null';
  }
  if (Array.isArray(value)) {
    let out = '[';
    for (let i = 0; i < value.length; i++) {
      if (i > 0) out += ',';
      out += canonicalJson(value[i]);
    }
    return `${out}]`;
  }
  const record = value as Record<string, unknown>;
  const keys = Object.keys(record)
    .filter((key) => record[key] !== undefined)
    .sort(compareCodePoints);
  let out = '{';
  for (let i = 0; i < keys.length; i++) {
    const key = keys[i] as string;
    if (i > 0) out += ',';
    out += `${JSON.stringify(key)}:${canonicalJson(record[key])}`;
  }
  return `${out}}`;
};

/** Feed documents in (partition, id) code-point order; `value()` is `sha256:<hex>`. */
export const createDocDigest = () => {
  const hash = createHash('sha256').update(docDigestHeader);
  return {
    /** `json` is the document as stored (any key order); it is re-serialized canonically. */
    addJson(partition: string, id: string, json: string): void {
      hash.update(`${partition}\u0000${id}\u0000${canonicalJson(JSON.parse(json))}\n`);
    },
    value: (): string => `sha256:${hash.digest('hex')}`,
  };
};

export const storeClosed = (): ShoalError =>
  new ShoalError('INTERNAL', 'projection store: used after close()');

const isPosition = (value: unknown): value is Position =>
  typeof value === 'number' && Number.isSafeInteger(value) && value >= 0;

export const checkCommit = (
  projection: string,
  batch: { from: Position; to: Position; version: number },
): void => {
  const { from, to, version } = batch;
  if (!isPosition(from) || !isPosition(to) || to < from) {
    throw new ShoalError(
      'POSITION_INVALID',
      `projection "${projection}": commit from ${from} to ${to}: want 0 ≤ from ≤ to`,
      { detail: { projection, from, to } },
    );
  }
  if (!Number.isSafeInteger(version) || version < 0) {
    throw new ShoalError('INTERNAL', `projection "${projection}": invalid version ${version}`, {
      detail: { projection, version },
    });
  }
};

/** A listing limit: undefined is no limit; anything else is clamped to a whole number ≥ 0. */
export const listLimit = (limit: number | undefined): number =>
  limit === undefined || Number.isNaN(limit) ? Infinity : Math.max(0, Math.floor(limit));

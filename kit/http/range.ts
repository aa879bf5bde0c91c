import type { ByteRange } from '../../domain';
import { ShoalError } from '../../domain';

/** A parsed `Range` header: from a start (to an end), or the last `suffix` bytes. */
export type RangeSpec = ByteRange | { readonly suffix: number };

/**
 * The one grammar: a single `bytes=<first>-<last>` range (RFC 9110), either end optional but
 * not both. Anything else (other units, several ranges, bad syntax) is no range at all, and
 * the whole body is sent, as RFC 9110 allows.
 */
const singleRange = (
  value: string | undefined,
): { readonly first?: number; readonly last?: number } | undefined => {
  if (value === undefined) return undefined;
  const match = /^bytes=(\d{0,15})-(\d{0,15})$/.exec(value.trim());
  if (match === null) return undefined;
  const [, first = '', last = ''] = match;
  if (first === '' && last === '') return undefined;
  return {
    ...(first !== '' && { first: Number(first) }),
    ...(last !== '' && { last: Number(last) }),
  };
};

const unsatisfiable = (value: string) =>
  new ShoalError('RANGE_INVALID', `unsatisfiable range "${value.slice(0, 80)}"`);

/**
 * Parses a `Range` request header before the body's size is known (the origin streams from a
 * backend). A syntactically valid but impossible range (`bytes=5-2`, `bytes=-0`) is
 * `RANGE_INVALID`; what `singleRange` does not read is undefined (the whole body).
 */
export const parseRangeHeader = (value: string | undefined): RangeSpec | undefined => {
  const range = singleRange(value);
  if (range === undefined) return undefined;
  const { first, last } = range;
  if (first === undefined) {
    if (last === 0) throw unsatisfiable(value as string);
    return { suffix: last as number };
  }
  if (last === undefined) return { start: first };
  if (last < first) throw unsatisfiable(value as string);
  return { start: first, end: last };
};

/** A suffix range made absolute once the size is known. */
export const absoluteRange = (spec: RangeSpec | undefined, size: number): ByteRange | undefined =>
  spec === undefined || !('suffix' in spec)
    ? spec
    : { start: Math.max(0, size - spec.suffix), end: size - 1 };

/**
 * The bytes a `Range` header asks of a body of `size` bytes, made absolute and cut at its
 * end (registries serving a blob whose size they know). Undefined — the whole body — for no
 * header, one `singleRange` does not read, or a range that ends before it starts (ignored,
 * as RFC 9110 allows); `RANGE_INVALID` (`detail.size`) for one that starts at or past the
 * end, `bytes=-0` included.
 */
export const parseRangeWithin = (
  value: string | undefined,
  size: number,
): { start: number; end: number } | undefined => {
  const range = singleRange(value);
  if (range === undefined) return undefined;
  const { first, last } = range;
  let start: number;
  let end = size - 1;
  if (first === undefined) {
    const suffix = last as number;
    start = suffix === 0 ? size : Math.max(size - suffix, 0);
  } else {
    if (last !== undefined && last < first) return undefined;
    start = first;
    if (last !== undefined) end = Math.min(last, size - 1);
  }
  if (start >= size) {
    throw new ShoalError(
      'RANGE_INVALID',
      `range ${(value as string).slice(0, 60)} is outside the blob`,
      { detail: { size } },
    );
  }
  return { start, end };
};

/**
 * What an answer's `Content-Range` says it carries: `bytes <start>-<end>/<size>`, `size`
 * undefined when the server writes `*`. Undefined when the header is absent or not that.
 */
export const parseServedRange = (
  value: string | undefined,
): { start: number; end: number; size?: number } | undefined => {
  const match = /^bytes (\d{1,15})-(\d{1,15})\/(\d{1,15}|\*)$/.exec((value ?? '').trim());
  if (match === null) return undefined;
  return {
    start: Number(match[1]),
    end: Number(match[2]),
    ...(match[3] !== '*' && { size: Number(match[3]) }),
  };
};

/** The size a 416 answer names in `Content-Range: bytes *\/<size>`, if it names one. */
export const unsatisfiedRangeSize = (value: string | undefined): number | undefined => {
  const size = /^bytes \*\/(\d{1,15})$/.exec((value ?? '').trim())?.[1];
  return size === undefined ? undefined : Number(size);
};

/**
 * Where an upload chunk claims to start and end, from `Content-Range` (`<start>-<end>` as OCI
 * sends it, or `bytes <start>-<end>/<total|*>`). `RANGE_INVALID` when it cannot be read.
 */
export const parseContentRange = (
  value: string | undefined,
): { start: number; end: number } | undefined => {
  if (value === undefined) return undefined;
  const match = /^(?:bytes[ =])?(\d{1,15})-(\d{1,15})(?:\/(?:\d{1,15}|\*))?$/.exec(value.trim());
  if (match === null) {
    throw new ShoalError('RANGE_INVALID', `invalid Content-Range "${value.slice(0, 80)}"`);
  }
  const start = Number(match[1]);
  const end = Number(match[2]);
  if (end < start) {
    throw new ShoalError('RANGE_INVALID', `Content-Range ${start}-${end} ends before it starts`);
  }
  return { start, end };
};

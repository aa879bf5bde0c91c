import type { ByteRange } from '../../../domain';
import { ShoalError } from '../../../domain';

/** A parsed `Range` header: from a start (to an end), or the last `suffix` bytes. */
export type RangeSpec = ByteRange | { readonly suffix: number };

/**
 * Parses a `Range` request header. Only single `bytes=` ranges are served; anything else
 * (other units, several ranges, bad syntax) is ignored and the whole blob is sent, as RFC 9110
 * allows. A syntactically valid but impossible range (`bytes=5-2`, `bytes=-0`) is an error.
 */
export const parseRangeHeader = (value: string | undefined): RangeSpec | undefined => {
  if (value === undefined) return undefined;
  const match = /^bytes=(\d{0,15})-(\d{0,15})$/.exec(value.trim());
  if (match === null) return undefined;
  const [, first = '', last = ''] = match;
  if (first === '' && last === '') return undefined;
  if (first === '') {
    const suffix = Number(last);
    if (suffix === 0) throw unsatisfiable(value);
    return { suffix };
  }
  const start = Number(first);
  if (last === '') return { start };
  const end = Number(last);
  if (end < start) throw unsatisfiable(value);
  return { start, end };
};

/** A suffix range made absolute once the size is known. */
export const absoluteRange = (spec: RangeSpec | undefined, size: number): ByteRange | undefined =>
  spec === undefined || !('suffix' in spec)
    ? spec
    : { start: Math.max(0, size - spec.suffix), end: size - 1 };

/**
 * Where a chunk claims to start and end, from `Content-Range` (`<start>-<end>` as OCI sends
 * it, or `bytes <start>-<end>/<total|*>`).
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

const unsatisfiable = (value: string) =>
  new ShoalError('RANGE_INVALID', `unsatisfiable range "${value.slice(0, 80)}"`);

import { truncate } from '../oci/digest';
import { matchesGlob, parsePattern } from '../oci/glob';
import { ShoalError } from '../shared/errors';
import type { Result } from '../shared/result';
import { fail, ok } from '../shared/result';
import type { RetentionRuleAdded } from './events';

/** A retention rule as its `RetentionRuleAdded` event states it. */
export type RetentionRule = RetentionRuleAdded;

/** What `retention add` takes before validation. */
export type RetentionInput = {
  readonly name?: string;
  readonly repoPattern: string;
  readonly tagPattern?: string;
  readonly keepLast?: number;
  readonly keepWithin?: string;
  readonly untagged?: boolean;
  readonly protect?: readonly string[];
};

const durationUnits: Readonly<Record<string, number>> = {
  ms: 1,
  s: 1000,
  m: 60_000,
  h: 3_600_000,
  d: 86_400_000,
  w: 7 * 86_400_000,
};

/** `90d`, `12h`, `30m`, `1w2d`, `1500ms` → milliseconds. */
export const parseDuration = (input: string): Result<number> => {
  const text = input.trim();
  let total = 0;
  let rest = text;
  const part = /^(\d+(?:\.\d+)?)(ms|s|m|h|d|w)/;
  while (rest.length > 0) {
    const match = part.exec(rest);
    if (match === null) break;
    total += Number(match[1]) * (durationUnits[match[2] as string] as number);
    rest = rest.slice(match[0].length);
  }
  if (text.length === 0 || rest.length > 0 || !Number.isFinite(total)) {
    return fail(
      new ShoalError(
        'PARAMETER_INVALID',
        `invalid duration "${truncate(input)}": want e.g. 90d, 12h, 30m, 1w2d`,
      ),
    );
  }
  return ok(Math.round(total));
};

/** Validates a rule's input into the event's data (without its id). */
export const parseRetentionInput = (input: RetentionInput): Result<Omit<RetentionRule, 'id'>> => {
  const repo = parsePattern(input.repoPattern, 'repository');
  if (!repo.ok) return repo;
  const tag = parsePattern(input.tagPattern ?? '*', 'tag');
  if (!tag.ok) return tag;
  const protect: string[] = [];
  for (const pattern of input.protect ?? []) {
    const parsed = parsePattern(pattern, 'tag');
    if (!parsed.ok) return parsed;
    protect.push(parsed.value);
  }
  if ((input.keepLast === undefined) === (input.keepWithin === undefined)) {
    return fail(
      new ShoalError('PARAMETER_INVALID', 'a retention rule needs one of keep-last or keep-within'),
    );
  }
  if (
    input.keepLast !== undefined &&
    (!Number.isSafeInteger(input.keepLast) || input.keepLast < 0)
  ) {
    return fail(new ShoalError('PARAMETER_INVALID', 'keep-last must be an integer ≥ 0'));
  }
  let keepWithinMs: number | undefined;
  if (input.keepWithin !== undefined) {
    const parsed = parseDuration(input.keepWithin);
    if (!parsed.ok) return parsed;
    keepWithinMs = parsed.value;
  }
  return ok({
    ...(input.name !== undefined && { name: input.name }),
    repoPattern: repo.value,
    tagPattern: tag.value,
    ...(input.keepLast !== undefined && { keepLast: input.keepLast }),
    ...(keepWithinMs !== undefined && { keepWithinMs }),
    ...(input.untagged === true && { untagged: true }),
    ...(protect.length > 0 && { protect }),
  });
};

/** Whether a tag is protected by any rule (such tags are never deleted by retention). */
export const isProtected = (rules: readonly RetentionRule[], tag: string): boolean =>
  rules.some((rule) => (rule.protect ?? []).some((pattern) => matchesGlob(pattern, tag)));

/** How a rule reads in listings and dry runs: `keep last 5` / `keep within 30d`. */
export const describeKeep = (rule: RetentionRule): string =>
  rule.keepLast !== undefined
    ? `keep last ${rule.keepLast}`
    : `keep within ${formatDuration(rule.keepWithinMs ?? 0)}`;

export const formatDuration = (ms: number): string => {
  for (const [unit, size] of [
    ['w', durationUnits.w],
    ['d', durationUnits.d],
    ['h', durationUnits.h],
    ['m', durationUnits.m],
    ['s', durationUnits.s],
  ] as const) {
    if (ms >= (size as number) && ms % (size as number) === 0) {
      return `${ms / (size as number)}${unit}`;
    }
  }
  return `${ms}ms`;
};

import { truncate } from './digest';
import { ShoalError } from '../shared/errors';
import type { Result } from '../shared/result';
import { fail, ok } from '../shared/result';

// Glob patterns over repository names and tags, as replication rules and access policies
// use them:
//
// - `*` matches any characters except `/` (one path component or part of one): `team/*`
//   matches `team/app`, not `team/app/web`;
// - `**` matches any characters, `/` included: `team/**` matches `team/app` and
//   `team/app/web`; a leading `**/` may also match nothing (`**/web` matches `web`);
// - `?` matches one character except `/`;
// - every other character matches itself. `[`, `]`, `{`, `}` and `\` are refused, so a
//   pattern never means something else than it reads.
//
// Tags have no `/`, so `*` and `**` are the same over tags. Matching is case-sensitive.
//
// Patterns come from users (rules on the log, policies in config) and are matched on the
// event loop, so matching never backtracks: the pattern is run as a set of positions advanced
// together, one character of the name at a time — O(name × pattern) whatever the pattern,
// where a backtracking regular expression takes exponential time on `*a*a*a…*c`.

export type PatternKind = 'repository' | 'tag';

const allowed: Record<PatternKind, RegExp> = {
  repository: /^[a-z0-9._\-/*?]+$/,
  tag: /^[a-zA-Z0-9._\-*?]+$/,
};

/** Checks a pattern's characters; the error names what is allowed. */
export const parsePattern = (input: string, kind: PatternKind): Result<string> => {
  if (input.length === 0 || input.length > 512) {
    return fail(
      new ShoalError('PARAMETER_INVALID', `${kind} pattern must be 1 to 512 characters`, {
        detail: { pattern: truncate(input) },
      }),
    );
  }
  if (!allowed[kind].test(input)) {
    return fail(
      new ShoalError(
        'PARAMETER_INVALID',
        `invalid ${kind} pattern "${truncate(input)}": use ${
          kind === 'repository' ? 'lowercase name characters, "/", ' : 'tag characters, '
        }"*", "**" and "?"`,
        { detail: { pattern: truncate(input) } },
      ),
    );
  }
  if (input.includes('***')) {
    return fail(
      new ShoalError('PARAMETER_INVALID', `invalid ${kind} pattern "${truncate(input)}": "***"`, {
        detail: { pattern: truncate(input) },
      }),
    );
  }
  return ok(input);
};

/** One step of a compiled pattern. `*` and `**` may repeat (stay) or be skipped (epsilon). */
type Step =
  | { readonly kind: 'char'; readonly char: string }
  | { readonly kind: 'one' }
  | { readonly kind: 'star' }
  | { readonly kind: 'globstar' };

type Compiled = {
  readonly steps: readonly Step[];
  /** A leading `**` + `/`: from the start, the steps after it may also begin at once. */
  readonly optionalPrefix: number;
};

const compile = (pattern: string): Compiled => {
  const steps: Step[] = [];
  let i = 0;
  let optionalPrefix = 0;
  if (pattern.startsWith('**/')) {
    steps.push({ kind: 'globstar' }, { kind: 'char', char: '/' });
    optionalPrefix = 2;
    i = 3;
  }
  while (i < pattern.length) {
    const c = pattern[i] as string;
    if (c === '*' && pattern[i + 1] === '*') {
      steps.push({ kind: 'globstar' });
      i += 2;
    } else if (c === '*') {
      steps.push({ kind: 'star' });
      i += 1;
    } else if (c === '?') {
      steps.push({ kind: 'one' });
      i += 1;
    } else {
      steps.push({ kind: 'char', char: c });
      i += 1;
    }
  }
  return { steps, optionalPrefix };
};

/**
 * Adds what the positions in `active` reach without reading a character: past a `*` or `**`
 * (which may match nothing), and past a leading `**` + `/`. Epsilon moves only go forward, so one
 * pass in order is the whole closure.
 */
const close = (compiled: Compiled, active: Uint8Array): void => {
  const { steps, optionalPrefix } = compiled;
  if (optionalPrefix > 0 && active[0] === 1) active[optionalPrefix] = 1;
  for (let i = 0; i < steps.length; i++) {
    if (active[i] !== 1) continue;
    const kind = (steps[i] as Step).kind;
    if (kind === 'star' || kind === 'globstar') active[i + 1] = 1;
  }
};

const run = (compiled: Compiled, value: string): boolean => {
  const { steps } = compiled;
  const size = steps.length + 1;
  let active = new Uint8Array(size);
  let next = new Uint8Array(size);
  active[0] = 1;
  close(compiled, active);
  for (const c of value) {
    next.fill(0);
    let any = false;
    for (let i = 0; i < steps.length; i++) {
      if (active[i] !== 1) continue;
      const step = steps[i] as Step;
      switch (step.kind) {
        case 'char':
        case 'one':
          if (step.kind === 'char' ? step.char === c : c !== '/') {
            next[i + 1] = 1;
            any = true;
          }
          break;
        case 'star':
        case 'globstar':
          if (step.kind === 'globstar' || c !== '/') {
            next[i] = 1;
            any = true;
          }
          break;
      }
    }
    if (!any) return false;
    close(compiled, next);
    [active, next] = [next, active];
  }
  return active[steps.length] === 1;
};

// Compiled patterns: rules and policies are few and matched often.
const cache = new Map<string, Compiled>();
const maxCached = 1024;

/** Whether a (valid) pattern matches the whole of `value`; linear in each. */
export const matchesGlob = (pattern: string, value: string): boolean => {
  let compiled = cache.get(pattern);
  if (compiled === undefined) {
    if (cache.size >= maxCached) cache.clear();
    compiled = compile(pattern);
    cache.set(pattern, compiled);
  }
  return run(compiled, value);
};

import { truncate } from '../oci/digest';
import { ShoalError } from '../shared/errors';
import type { Result } from '../shared/result';
import { fail, ok } from '../shared/result';

// Glob patterns over repository names and tags, as replication rules use them:
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
  if (/\*{3,}/.test(input)) {
    return fail(
      new ShoalError('PARAMETER_INVALID', `invalid ${kind} pattern "${truncate(input)}": "***"`, {
        detail: { pattern: truncate(input) },
      }),
    );
  }
  return ok(input);
};

const escape = (text: string) => text.replace(/[.*+?^${}()|[\]\\/-]/g, '\\$&');

/** The regular expression a (valid) pattern means, anchored at both ends. */
export const globToRegExp = (pattern: string): RegExp => {
  let out = '';
  let i = 0;
  if (pattern.startsWith('**/')) {
    out += '(?:.*/)?';
    i = 3;
  }
  while (i < pattern.length) {
    const c = pattern[i] as string;
    if (c === '*' && pattern[i + 1] === '*') {
      out += '.*';
      i += 2;
    } else if (c === '*') {
      out += '[^/]*';
      i += 1;
    } else if (c === '?') {
      out += '[^/]';
      i += 1;
    } else {
      out += escape(c);
      i += 1;
    }
  }
  return new RegExp(`^${out}$`);
};

// Compiled patterns: rules are few and matched once per tag change.
const compiled = new Map<string, RegExp>();
const maxCompiled = 1024;

export const matchesGlob = (pattern: string, value: string): boolean => {
  let regex = compiled.get(pattern);
  if (regex === undefined) {
    if (compiled.size >= maxCompiled) compiled.clear();
    regex = globToRegExp(pattern);
    compiled.set(pattern, regex);
  }
  return regex.test(value);
};

/** What a rule selects: repositories and tags by pattern. */
export type RuleScope = { readonly repoPattern: string; readonly tagPattern: string };

export const ruleMatches = (scope: RuleScope, repo: string, tag: string): boolean =>
  matchesGlob(scope.repoPattern, repo) && matchesGlob(scope.tagPattern, tag);

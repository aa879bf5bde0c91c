import { matchesGlob } from '../oci/glob';

/** What a rule selects: repositories and tags by pattern (the globs of `../oci/glob.ts`). */
export type RuleScope = { readonly repoPattern: string; readonly tagPattern: string };

export const ruleMatches = (scope: RuleScope, repo: string, tag: string): boolean =>
  matchesGlob(scope.repoPattern, repo) && matchesGlob(scope.tagPattern, tag);

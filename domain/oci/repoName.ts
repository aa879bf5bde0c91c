import { ShoalError } from '../shared/errors';
import type { Result } from '../shared/result';
import { fail, ok } from '../shared/result';
import { truncate } from './digest';

/** A repository name (OCI distribution spec `<name>`), validated. */
export type RepoName = string & { readonly __brand: 'RepoName' };

/** The CNCF registry's and most clients' limit on a whole name. */
export const repoNameMaxLength = 255;

const component = '[a-z0-9]+(?:(?:\\.|_|__|-+)[a-z0-9]+)*';
const repoNameGrammar = new RegExp(`^${component}(?:/${component})*$`);

export const parseRepoName = (input: string): Result<RepoName> => {
  if (input.length === 0) {
    return fail(new ShoalError('NAME_INVALID', 'repository name is empty'));
  }
  if (input.length > repoNameMaxLength) {
    return fail(
      new ShoalError(
        'NAME_INVALID',
        `repository name is ${input.length} characters long; the limit is ${repoNameMaxLength}`,
        { detail: { name: truncate(input), limit: repoNameMaxLength } },
      ),
    );
  }
  if (!repoNameGrammar.test(input)) {
    return fail(
      new ShoalError(
        'NAME_INVALID',
        `invalid repository name "${truncate(input)}": want lowercase path components ` +
          'of [a-z0-9] joined by ".", "_", "__" or "-", separated by "/"',
        { detail: { name: truncate(input) } },
      ),
    );
  }
  return ok(input as RepoName);
};

import { ShoalError } from '../shared/errors';
import type { Result } from '../shared/result';
import { fail, ok } from '../shared/result';
import { truncate } from './digest';

/** A tag (OCI distribution spec `<reference>` when it is not a digest), validated. */
export type Tag = string & { readonly __brand: 'Tag' };

const tagGrammar = /^[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}$/;

export const parseTag = (input: string): Result<Tag> =>
  tagGrammar.test(input)
    ? ok(input as Tag)
    : fail(
        new ShoalError(
          'TAG_INVALID',
          `invalid tag "${truncate(input)}": want [a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}`,
          { detail: { tag: truncate(input) } },
        ),
      );

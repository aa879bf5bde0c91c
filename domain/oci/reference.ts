import { ShoalError } from '../shared/errors';
import type { Result } from '../shared/result';
import { fail, ok } from '../shared/result';
import type { Digest } from './digest';
import { parseDigest, truncate } from './digest';
import type { RepoName } from './repoName';
import { parseRepoName } from './repoName';
import type { Tag } from './tag';
import { parseTag } from './tag';

/** `repo:tag`, `repo@digest` or `repo:tag@digest`. */
export type Reference = {
  readonly repo: RepoName;
  readonly tag?: Tag;
  readonly digest?: Digest;
};

/** A reference that names a tag, as the tag commands take it: `repo:tag`. */
export type TagReference = { readonly repo: RepoName; readonly tag: Tag };

export const parseReference = (input: string): Result<Reference> => {
  const at = input.indexOf('@');
  const named = at === -1 ? input : input.slice(0, at);
  let digest: Digest | undefined;
  if (at !== -1) {
    const parsed = parseDigest(input.slice(at + 1));
    if (!parsed.ok) return parsed;
    digest = parsed.value;
  }
  // Repository names contain no ':', so a colon after the last '/' starts the tag.
  const colon = named.lastIndexOf(':');
  const slash = named.lastIndexOf('/');
  const hasTag = colon > slash;
  const repo = parseRepoName(hasTag ? named.slice(0, colon) : named);
  if (!repo.ok) return repo;
  let tag: Tag | undefined;
  if (hasTag) {
    const parsed = parseTag(named.slice(colon + 1));
    if (!parsed.ok) return parsed;
    tag = parsed.value;
  }
  if (tag === undefined && digest === undefined) {
    return fail(
      new ShoalError(
        'REFERENCE_INVALID',
        `reference "${truncate(input)}" names neither a tag nor a digest`,
      ),
    );
  }
  return ok({ repo: repo.value, ...(tag && { tag }), ...(digest && { digest }) });
};

export const parseTagReference = (input: string): Result<TagReference> => {
  const parsed = parseReference(input);
  if (!parsed.ok) return parsed;
  const { repo, tag, digest } = parsed.value;
  if (tag === undefined || digest !== undefined) {
    return fail(new ShoalError('REFERENCE_INVALID', `want <repo>:<tag>, got "${truncate(input)}"`));
  }
  return ok({ repo, tag });
};

export const formatTagReference = ({ repo, tag }: TagReference): string => `${repo}:${tag}`;

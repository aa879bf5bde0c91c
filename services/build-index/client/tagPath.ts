import type { RepoName, TagReference } from '../../../domain';
import { ShoalError, orThrow, parseRepoName, parseTag } from '../../../domain';

export type TagPath =
  | { kind: 'tag'; ref: TagReference }
  | { kind: 'history'; ref: TagReference }
  | { kind: 'tags'; repo: RepoName };

/**
 * Parses what follows `/v1/repositories/`: `<repo>/tags`, `<repo>/tags/<tag>` or
 * `<repo>/tags/<tag>/history`. Repository names may contain `/tags/`; tags never contain a
 * slash, so the last `/tags` segment is the separator.
 */
export const parseTagPath = (path: string): TagPath => {
  let rest = path;
  let history = false;
  if (rest.endsWith('/history')) {
    rest = rest.slice(0, -'/history'.length);
    history = true;
  }
  if (!history && rest.endsWith('/tags')) {
    return { kind: 'tags', repo: orThrow(parseRepoName(rest.slice(0, -'/tags'.length))) };
  }
  const split = rest.lastIndexOf('/tags/');
  if (split === -1) {
    throw new ShoalError(
      'PARAMETER_INVALID',
      'want /v1/repositories/<repo>/tags[/<tag>[/history]]',
    );
  }
  const ref = {
    repo: orThrow(parseRepoName(rest.slice(0, split))),
    tag: orThrow(parseTag(rest.slice(split + '/tags/'.length))),
  };
  return history ? { kind: 'history', ref } : { kind: 'tag', ref };
};

export const tagPath = (ref: TagReference, suffix = ''): string =>
  `/v1/repositories/${ref.repo}/tags/${encodeURIComponent(ref.tag)}${suffix}`;

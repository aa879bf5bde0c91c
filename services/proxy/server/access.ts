import type { FastifyRequest } from 'fastify';
import type { AccessAction, RepoName } from '../../../domain';
import type { V2Path } from '../../shared/oci/parseV2Path';
import { unauthorized } from '../../shared/security/challenge';
import type { UserAuth } from '../../shared/security/userAuth';

/**
 * The action a `/v2/` request takes on its repository, as the CNCF registry maps them: reads
 * need `pull`; uploads (every step of a session), manifest and blob writes `push` (moving a tag also `overwrite`, which
 * the tag write checks); deletes `delete`. The ping and `_catalog` name no repository.
 */
export const requiredAccess = (
  target: V2Path,
  method: string,
): { repo: RepoName; action: AccessAction } | undefined => {
  if (target.kind === 'ping' || target.kind === 'catalog') return undefined;
  const action: AccessAction =
    target.kind === 'upload' || target.kind === 'uploads'
      ? 'push'
      : method === 'GET' || method === 'HEAD'
        ? 'pull'
        : method === 'DELETE'
          ? 'delete'
          : 'push';
  return { repo: target.repo, action };
};

const hasCredentials = (request: FastifyRequest) =>
  typeof request.headers.authorization === 'string';

/**
 * Checks a `/v2/` request before it runs. A repository request needs its action (see
 * {@link requiredAccess}); the ping and the catalog need credentials of some kind when access
 * is required (the ping's 401 is how `docker login` finds the token endpoint), and the catalog
 * is then filtered to what the caller may pull.
 */
export const checkV2Access = (
  auth: UserAuth,
  request: FastifyRequest,
  target: V2Path,
  method: string,
): void => {
  const need = requiredAccess(target, method);
  if (need !== undefined) {
    auth.require(request, need.repo, need.action);
    return;
  }
  if (auth.access.mode === 'open' || request.subject.kind !== 'anonymous') return;
  if (hasCredentials(request)) return;
  const scope = target.kind === 'catalog' ? 'registry:catalog:*' : undefined;
  throw unauthorized('authentication required', auth.challenge(request, scope));
};

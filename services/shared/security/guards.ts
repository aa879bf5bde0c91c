import type { FastifyRequest } from 'fastify';
import type { AccessAction } from '../../../domain';
import { ShoalError, accessActions } from '../../../domain';
import type { Logger } from '../logger';
import type { SecurityMode } from './authenticate';
import type { AuthConfig } from './authConfig';
import { requireService } from './authenticate';
import { unauthorized } from './challenge';
import { actorOf } from './subject';
import type { UserAuth } from './userAuth';
import { createUserAuth } from './userAuth';

/**
 * Who may use an API of a role that cluster services and users both call (build-index's tags,
 * the replication rules): `mode` for services, `users` (when the role has user auth) for
 * people. Without `users`, only cluster services.
 */
export type ApiAccess = { readonly mode: SecurityMode; readonly users?: UserAuth };

/**
 * Refuses a request on a repository by a caller that may not take `action` there: cluster
 * services may (they act for someone the proxy checked, named on-behalf-of); users as the
 * policies say; anonymous callers get a 401 with the role's challenge. Open mode lets all in.
 */
export const requireOnRepository = (
  request: FastifyRequest,
  access: ApiAccess,
  repo: string,
  action: AccessAction,
): void => {
  if (access.mode === 'open' || request.subject.kind === 'service') return;
  if (access.users === undefined) return requireService(request, access.mode);
  access.users.require(request, repo, action);
};

/** Whether a caller may take `action` on `repo` (for filtering lists and computing options). */
export const mayOnRepository = (
  request: FastifyRequest,
  access: ApiAccess,
  repo: string,
  action: AccessAction,
): boolean => {
  if (access.mode === 'open' || request.subject.kind === 'service') return true;
  return access.users?.access.decide(request.subject, repo, action) === 'allow';
};

/**
 * Refuses an anonymous caller (401 with the role's challenge) unless `mode` is open or the
 * anonymous policy lets callers without credentials pull something.
 */
export const requireCaller = (request: FastifyRequest, access: ApiAccess): void => {
  if (access.mode === 'open' || request.subject.kind !== 'anonymous') return;
  if (access.users === undefined) return requireService(request, access.mode);
  if (access.users.access.anonymousPulls()) return;
  throw unauthorized('authentication required', access.users.challenge(request));
};

/**
 * Refuses a caller who is neither a cluster service nor an admin (`auth.admins`): replication
 * rules copy images out of the cluster, so only admins add or remove them.
 */
export const requireAdmin = (request: FastifyRequest, access: ApiAccess): void => {
  if (access.mode === 'open' || request.subject.kind === 'service') return;
  const users = access.users;
  if (users === undefined) return requireService(request, access.mode);
  if (request.subject.kind === 'anonymous') {
    throw unauthorized('authentication required', users.challenge(request));
  }
  if (!users.access.isAdmin(request.subject)) {
    throw new ShoalError('DENIED', `${actorOf(request.subject)} is not an admin`);
  }
};

/**
 * The access of a role whose API cluster services and users both call (build-index, the
 * replicator alone, the console): users from its `auth` config with passwords (Basic) or
 * Shoal's tokens (checked with `auth.token.keyFile`'s public half) or a trusted issuer's; its
 * app puts their authenticators after the cluster's (`createRoleApp`'s `users`). Cluster
 * services may do everything.
 */
export const createApiAccess = (options: {
  auth: AuthConfig;
  security?: { readonly mode: SecurityMode };
  logger: Logger;
  realm: string;
}): { access: ApiAccess; users: UserAuth } => {
  const mode = options.security?.mode ?? 'open';
  const users = createUserAuth({
    config: options.auth,
    mode,
    logger: options.logger,
    serviceActions: [...accessActions],
    verifyOwnTokens: true,
    challenge: () => `Basic realm="${options.realm}"`,
  });
  return { access: { mode, users }, users };
};

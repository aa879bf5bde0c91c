import type { HttpApp } from './http';
import { createHttpApp } from './http';
import type { Logger } from './logger';
import type { Authenticator } from './security/authenticate';
import type { RoleSecurity } from './security/roleSecurity';
import type { Tracing } from './tracing';

/**
 * A role's HTTP app on its security: the listener's TLS and limits, the admin listener, and
 * one authenticator chain — the cluster's identities first, then the role's own users (its
 * `auth`: passwords, Shoal's tokens, trusted issuers), so a service is never taken for a user.
 */
export const createRoleApp = (options: {
  service: string;
  logger: Logger;
  tracing: Tracing;
  security: RoleSecurity;
  /** The role's users, after the cluster's identities. */
  users?: readonly Authenticator[];
  /** Readiness: `/health` answers 503 with the reason while this returns a string. */
  notReady?: () => string | undefined;
  bodyLimit?: number;
}): HttpApp => {
  const { security, users = [], ...rest } = options;
  return createHttpApp({
    ...rest,
    authenticators: [...security.authenticators, ...users],
    server: security.server,
    ...(security.admin !== undefined && { admin: security.admin }),
  });
};

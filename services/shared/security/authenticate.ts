import type { FastifyInstance, FastifyRequest } from 'fastify';
import { ShoalError } from '../../../domain';
import type { ServiceRole, Subject } from './subject';
import { actorOf } from './subject';

declare module 'fastify' {
  interface FastifyRequest {
    /**
     * Who made the request, set before any route runs by the app's authenticator chain
     * (`anonymous` when no authenticator recognised credentials).
     */
    subject: Subject;
  }
}

/**
 * One way of telling who made a request: a client certificate, a service token, an htpasswd
 * user, a user's token. Each looks only at credentials of its own kind and answers
 * - `undefined`: the request carries none of its kind (the next authenticator is asked),
 * - a `Subject`: the request is that subject,
 * - or throws `ShoalError('UNAUTHORIZED')`: credentials of its kind that do not check out
 *   (a bad password, an expired token). A wrong credential never falls through to anonymous.
 */
export type Authenticator = {
  /** For logs: `mtls`, `service-token`, `htpasswd`, `token`. */
  readonly name: string;
  authenticate(request: FastifyRequest): Subject | undefined | Promise<Subject | undefined>;
};

/**
 * Installs the authenticator chain on an app: an `onRequest` hook that sets
 * `request.subject` from the first authenticator that recognises the request, in the order
 * given (cluster identities first, then users), or anonymous with the client's address.
 */
export const installAuthentication = (
  app: FastifyInstance,
  authenticators: readonly Authenticator[],
): void => {
  app.decorateRequest('subject', undefined as unknown as never);
  app.addHook('onRequest', async (request) => {
    for (const authenticator of authenticators) {
      const subject = await authenticator.authenticate(request);
      if (subject !== undefined) {
        request.subject = subject;
        return;
      }
    }
    request.subject = { kind: 'anonymous', address: request.ip };
  });
};

/** How strictly a role checks who calls it: `required` in production, `open` in `shoal dev`. */
export type SecurityMode = 'open' | 'required';

/**
 * Refuses a request that does not come from a cluster identity (mTLS client certificate or
 * service token), or from one of `roles` when given: `UNAUTHORIZED` when the caller is
 * anonymous, `DENIED` when it is someone else. In `open` mode every caller passes.
 */
export const requireService = (
  request: FastifyRequest,
  mode: SecurityMode,
  roles?: readonly ServiceRole[],
): void => {
  if (mode === 'open') return;
  const subject = request.subject;
  if (subject.kind === 'anonymous') {
    throw new ShoalError('UNAUTHORIZED', 'this API needs a cluster identity');
  }
  if (subject.kind !== 'service') {
    throw new ShoalError('DENIED', 'this API is for cluster services only');
  }
  if (roles !== undefined && !roles.includes(subject.role)) {
    throw new ShoalError('DENIED', `this API is for ${roles.join(', ')} only`);
  }
};

/**
 * The headers a service sends when it calls another service for someone (the proxy writing a
 * tag for alice): the actor and the client's address, for the audit trail.
 */
export const onBehalfOfHeaders = {
  actor: 'Shoal-On-Behalf-Of',
  client: 'Shoal-Client-Address',
} as const;

/**
 * An actor as `actorOf` writes it, bounded, without spaces or control characters:
 * `anonymous`, `user:…`, `robot:…`, `service:<role>/<name>`.
 */
const actorPattern =
  /^(anonymous|(user|robot):[^\s\p{Cc}]{1,256}|service:[a-z-]+\/[^\s\p{Cc}]{1,128})$/u;
/** An IPv4 or IPv6 address (with an optional zone), or a host name. */
const addressPattern = /^[0-9A-Za-z.:%_-]{1,128}$/;

/**
 * The `actor` and `client` to record for the events a request causes. A service that calls on
 * someone's behalf names them in {@link onBehalfOfHeaders}; those headers count only from an
 * authenticated service subject (a user cannot claim to be someone else), and a malformed
 * value is ignored.
 */
export const auditOf = (request: FastifyRequest): { actor: string; client: string } => {
  const subject = request.subject;
  const own = { actor: actorOf(subject), client: subject.address };
  if (subject.kind !== 'service') return own;
  const actor = headerValue(request, onBehalfOfHeaders.actor);
  if (actor === undefined || !actorPattern.test(actor)) return own;
  const client = headerValue(request, onBehalfOfHeaders.client);
  return {
    actor,
    client: client !== undefined && addressPattern.test(client) ? client : subject.address,
  };
};

const headerValue = (request: FastifyRequest, name: string): string | undefined => {
  const raw = request.headers[name.toLowerCase()];
  return Array.isArray(raw) ? raw[0] : raw;
};

import { setTimeout as sleep } from 'node:timers/promises';
import type { FastifyRequest } from 'fastify';
import { Counter } from 'prom-client';
import type { Registry } from 'prom-client';
import type { AccessAction } from '../../../domain';
import { ShoalError, formatScope } from '../../../domain';
import type { Logger } from '../logger';
import type { AccessControl } from './accessControl';
import { bindGrant, createAccessControl } from './accessControl';
import type { Authenticator, SecurityMode } from './authenticate';
import type { AuthConfig } from './authConfig';
import type { Htpasswd } from './htpasswd';
import { openHtpasswd } from './htpasswd';
import { unauthorized } from './challenge';
import type { Subject } from './subject';
import { actorOf } from './subject';
import type { TokenSigner, TokenVerifier } from './tokens';
import { createTokenSigner, createTokenVerifier, readPublicKey } from './tokens';

/** Users and their credentials for one service: who logs in, and what they may do. */
export type UserAuth = {
  /** Basic (htpasswd) and Bearer (tokens) authenticators, for createHttpApp's chain. */
  readonly authenticators: readonly Authenticator[];
  readonly access: AccessControl;
  /** Shoal's token signer, when this service issues tokens (the proxy). */
  readonly signer?: TokenSigner;
  /** Checks a user's password (the token endpoint's password grant); delays a failure. */
  checkPassword(request: FastifyRequest, user: string, password: string): Promise<Subject>;
  /**
   * Refuses a request whose subject may not take `action` on `repo`: `UNAUTHORIZED` with a
   * challenge for the scope (no credentials, or a token without the scope), or `DENIED`.
   */
  require(request: FastifyRequest, repo: string, action: AccessAction): void;
  /** The challenge of a 401 from this service, for a scope or none. */
  challenge(request: FastifyRequest, scope?: string): string;
  /** Counts a failed login, waits `failedLogins.delayMs`, and fails with `UNAUTHORIZED`. */
  refuse(request: FastifyRequest, method: string, why: string): Promise<never>;
  /** The subject a user name stands for: a robot when configured as one. */
  subjectFor(name: string, address: string, kind?: 'user' | 'robot'): Subject;
  /** Adds the failed-login counter to a service's metrics. */
  registerMetrics(metrics: Registry): void;
};

const basicPrefix = /^basic\s+/i;

/** What a challenge asks for, per action: Docker clients ask for `pull,push` to push. */
const scopeActions: Record<AccessAction, string[]> = {
  pull: ['pull'],
  push: ['pull', 'push'],
  overwrite: ['pull', 'push'],
  delete: ['delete'],
};
const bearerPrefix = /^bearer\s+/i;

/** `user:password` of a Basic `Authorization` header; UNAUTHORIZED when malformed. */
export const parseBasic = (header: string): { user: string; password: string } => {
  const text = Buffer.from(header.replace(basicPrefix, ''), 'base64').toString('utf8');
  const colon = text.indexOf(':');
  if (colon <= 0) throw new ShoalError('UNAUTHORIZED', 'malformed Basic credentials');
  return { user: text.slice(0, colon), password: text.slice(colon + 1) };
};

/**
 * A service's user authentication from its `auth` config: htpasswd users (Basic), Shoal's own
 * tokens (`signer`, when the service issues them, or `ownKey` to verify another's) and the
 * configured external issuers. A credential that fails is answered `UNAUTHORIZED` after
 * `failedLogins.delayMs`, and counted in `shoal_auth_failed_logins_total`.
 */
export const createUserAuth = (options: {
  config: AuthConfig;
  mode: SecurityMode;
  logger: Logger;
  /** What cluster services may do here (see `createAccessControl`). */
  serviceActions: readonly AccessAction[];
  /**
   * `WWW-Authenticate` of a 401: a Bearer challenge naming the token endpoint (the proxy, the
   * agent), or Basic for an API that takes passwords (build-index).
   */
  challenge: (request: FastifyRequest, scope?: string) => string;
  /** Issue tokens (the proxy): signs with `auth.token.keyFile`. */
  issueTokens?: boolean;
  /**
   * Verify Shoal's tokens without issuing them (build-index): with the public half of
   * `auth.token.keyFile`, when it is set.
   */
  verifyOwnTokens?: boolean;
}): UserAuth => {
  const { config, logger } = options;
  const failed = new Counter({
    name: 'shoal_auth_failed_logins_total',
    help: 'Failed logins (bad password, unknown user, invalid or expired token)',
    labelNames: ['method'] as const,
    registers: [],
  });
  const htpasswd: Htpasswd | undefined =
    config.htpasswd.file === ''
      ? undefined
      : openHtpasswd(config.htpasswd.file, {
          onReloadError: (error) =>
            logger.error({ err: error }, 'htpasswd file not reloaded; the last good one stays'),
        });
  const signer = options.issueTokens
    ? createTokenSigner({
        keyFile: config.token.keyFile,
        issuer: config.token.issuer,
        audience: config.token.service,
      })
    : undefined;
  const own =
    signer !== undefined
      ? { issuer: signer.issuer, audience: signer.audience, publicKey: signer.publicKey }
      : options.verifyOwnTokens && config.token.keyFile !== ''
        ? {
            issuer: config.token.issuer,
            audience: config.token.service,
            publicKey: readPublicKey(config.token.keyFile),
          }
        : undefined;
  const verifier: TokenVerifier = createTokenVerifier({
    ...(own !== undefined && { own }),
    issuers: config.issuers,
  });
  const robots = new Set(config.robots);
  const access = createAccessControl({
    mode: options.mode,
    policies: {
      policies: config.policies,
      anonymous: config.anonymous,
      admins: config.admins,
    },
    groups: config.groups,
    serviceActions: options.serviceActions,
  });

  const subjectFor = (name: string, address: string, kind?: 'user' | 'robot'): Subject => ({
    kind: kind === 'robot' || robots.has(name) ? 'robot' : 'user',
    name,
    groups: [],
    address,
  });

  /** Waits, counts and refuses: the same for every kind of failure. */
  const refuse = async (request: FastifyRequest, method: string, why: string): Promise<never> => {
    failed.inc({ method });
    logger.warn({ method, client: request.ip }, 'failed login');
    if (config.failedLogins.delayMs > 0) await sleep(config.failedLogins.delayMs);
    throw unauthorized(why, options.challenge(request));
  };

  const checkPassword = async (request: FastifyRequest, user: string, password: string) => {
    if (htpasswd === undefined || !(await htpasswd.verify(user, password))) {
      return refuse(request, 'basic', 'incorrect username or password');
    }
    return subjectFor(user, request.ip);
  };

  const header = (request: FastifyRequest) => {
    const value = request.headers.authorization;
    return typeof value === 'string' ? value : undefined;
  };

  const basic: Authenticator = {
    name: 'htpasswd',
    async authenticate(request) {
      const value = header(request);
      if (value === undefined || !basicPrefix.test(value)) return undefined;
      const { user, password } = parseBasic(value);
      return checkPassword(request, user, password);
    },
  };

  const bearer: Authenticator = {
    name: 'token',
    async authenticate(request) {
      const value = header(request);
      if (value === undefined || !bearerPrefix.test(value)) return undefined;
      let token;
      try {
        token = await verifier.verify(value.replace(bearerPrefix, '').trim());
      } catch (error) {
        // Open access checks nothing: a token it cannot read (a cluster service's, sent to a
        // role that does not take them) leaves the caller anonymous, as it would be without.
        if (options.mode === 'open') return undefined;
        return refuse(request, 'token', (error as Error).message);
      }
      // An anonymous token (asked for without credentials) grants what anonymous callers may.
      const subject: Subject =
        token.kind === 'anonymous'
          ? { kind: 'anonymous', address: request.ip }
          : ({
              ...subjectFor(token.subject, request.ip, token.kind),
              groups: token.groups,
            } as Subject);
      return bindGrant(subject, {
        ...(token.access !== undefined && { access: token.access }),
        checkPolicies: token.checkPolicies,
        pushOverwrites: !token.checkPolicies,
      });
    },
  };

  return {
    // Bearer tokens only where some can be checked: Shoal's own key or a trusted issuer.
    authenticators: own !== undefined || config.issuers.length > 0 ? [basic, bearer] : [basic],
    access,
    ...(signer !== undefined && { signer }),
    checkPassword,
    subjectFor,
    challenge: options.challenge,
    refuse,
    require(request, repo, action) {
      const decision = access.decide(request.subject, repo, action);
      if (decision === 'allow') return;
      if (decision === 'deny') {
        throw new ShoalError('DENIED', `${actorOf(request.subject)} may not ${action} ${repo}`, {
          detail: { name: repo, action },
        });
      }
      const scope = formatScope({ type: 'repository', name: repo, actions: scopeActions[action] });
      const hasToken = bearerPrefix.test(header(request) ?? '');
      throw unauthorized(
        `authentication required to ${action} ${repo}`,
        options.challenge(request, scope) + (hasToken ? ',error="insufficient_scope"' : ''),
      );
    },
    registerMetrics: (metrics) => metrics.registerMetric(failed),
  };
};

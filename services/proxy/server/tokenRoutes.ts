import type { FastifyPluginAsync, FastifyRequest } from 'fastify';
import type { AccessAction, ResourceAccess } from '../../../domain';
import { ShoalError, accessActions, actionsOf, parseScope } from '../../../domain';
import type { Subject } from '../../shared/security/subject';
import type { TokenSigner } from '../../shared/security/tokens';
import type { UserAuth } from '../../shared/security/userAuth';

/** Scopes a token request may name at most (each `scope` may hold several, space-separated). */
const maxScopes = 32;

type TokenQuery = {
  scope?: string | string[];
  service?: string;
  account?: string;
  offline_token?: string;
  client_id?: string;
};

type TokenForm = {
  grant_type?: string;
  username?: string;
  password?: string;
  refresh_token?: string;
  scope?: string;
  service?: string;
  access_type?: string;
  client_id?: string;
};

const scopesOf = (raw: string | string[] | undefined): ResourceAccess[] => {
  const texts = (Array.isArray(raw) ? raw : raw === undefined ? [] : [raw])
    .flatMap((s) => s.split(' '))
    .filter((s) => s !== '');
  if (texts.length > maxScopes) {
    throw new ShoalError('PARAMETER_INVALID', `at most ${maxScopes} scopes per token`);
  }
  const out: ResourceAccess[] = [];
  for (const text of texts) {
    const parsed = parseScope(text);
    if (!parsed.ok) throw parsed.error;
    out.push(parsed.value);
  }
  return out;
};

/**
 * The token endpoint of the Docker token protocol, built into the proxy, so `docker login`,
 * skopeo, crane, oras and containerd follow the proxy's `WWW-Authenticate: Bearer` challenge:
 *
 * - `GET /auth/token?service=…&scope=…` with Basic credentials (or none: a token with what
 *   anonymous callers may do), as docker and the CNCF registry's clients ask;
 * - `POST /auth/token` (form: `grant_type=password` with `username`/`password`, or
 *   `grant_type=refresh_token`), as containerd and oras ask; `access_type=offline` (or GET's
 *   `offline_token=true`) adds a refresh token;
 * - `GET /auth/jwks`: the public key, for agents and build-index to check tokens.
 *
 * A token grants, per repository asked for, the actions asked for that the policies allow
 * (`push` brings `overwrite` when that is allowed too); `registry:catalog:*` is always
 * granted (the catalog lists only what the caller may pull).
 */
export const tokenRoutes =
  (
    auth: UserAuth,
    signer: TokenSigner,
    lifetimes: { access: number; refresh: number },
  ): FastifyPluginAsync =>
  async (app) => {
    app.addContentTypeParser(
      'application/x-www-form-urlencoded',
      { parseAs: 'string', bodyLimit: 64 * 1024 },
      (_request, body, done) =>
        done(null, Object.fromEntries(new URLSearchParams(body as string).entries())),
    );

    const grant = (subject: Subject, wanted: readonly ResourceAccess[]): ResourceAccess[] =>
      wanted.map((scope) => {
        if (scope.type === 'registry' && scope.name === 'catalog') return scope;
        if (scope.type !== 'repository') return { ...scope, actions: [] };
        const asked = actionsOf(scope.actions);
        const allowed: Set<AccessAction> =
          auth.access.mode === 'open'
            ? new Set(accessActions)
            : auth.access.allowed(subject, scope.name);
        const granted = accessActions.filter((a) => asked.has(a) && allowed.has(a));
        if (
          granted.includes('push') &&
          allowed.has('overwrite') &&
          !granted.includes('overwrite')
        ) {
          granted.push('overwrite');
        }
        return { type: 'repository', name: scope.name, actions: granted };
      });

    const issue = async (subject: Subject, wanted: ResourceAccess[], offline: boolean) => {
      const person = subject.kind === 'user' || subject.kind === 'robot';
      const access = grant(subject, wanted);
      const claims = {
        subject: person ? subject.name : 'anonymous',
        kind: person ? subject.kind : ('anonymous' as const),
        access,
      };
      const token = await signer.sign(claims, lifetimes.access);
      const refresh =
        offline && person
          ? await signer.sign({ ...claims, access: [] }, lifetimes.refresh, { refresh: true })
          : undefined;
      return {
        token,
        access_token: token,
        expires_in: lifetimes.access,
        issued_at: new Date().toISOString(),
        ...(refresh !== undefined && { refresh_token: refresh }),
      };
    };

    const noCache = { 'cache-control': 'no-store', pragma: 'no-cache' };

    app.get('/auth/token', async (request: FastifyRequest, reply) => {
      const query = request.query as TokenQuery;
      const body = await issue(
        request.subject,
        scopesOf(query.scope),
        query.offline_token === 'true',
      );
      return reply.headers(noCache).send(body);
    });

    app.post('/auth/token', async (request, reply) => {
      const form = (request.body ?? {}) as TokenForm;
      let subject: Subject;
      if (form.grant_type === 'password') {
        if (form.username === undefined || form.password === undefined) {
          throw new ShoalError(
            'PARAMETER_INVALID',
            'grant_type=password needs username and password',
          );
        }
        subject = await auth.checkPassword(request, form.username, form.password);
      } else if (form.grant_type === 'refresh_token') {
        if (form.refresh_token === undefined) {
          throw new ShoalError('PARAMETER_INVALID', 'grant_type=refresh_token needs refresh_token');
        }
        let holder: Awaited<ReturnType<TokenSigner['verifyRefresh']>>;
        try {
          holder = await signer.verifyRefresh(form.refresh_token);
        } catch (error) {
          return auth.refuse(request, 'refresh', (error as Error).message);
        }
        subject = auth.subjectFor(holder.subject, request.ip, holder.kind);
      } else {
        throw new ShoalError('PARAMETER_INVALID', 'grant_type must be password or refresh_token');
      }
      const body = await issue(subject, scopesOf(form.scope), form.access_type === 'offline');
      return reply.headers(noCache).send({
        ...body,
        ...(form.grant_type === 'refresh_token' && { refresh_token: form.refresh_token }),
      });
    });

    app.get('/auth/jwks', async (_request, reply) =>
      reply.header('cache-control', 'max-age=300').send(await signer.jwks()),
    );
  };

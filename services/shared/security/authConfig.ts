import type { Static } from '@sinclair/typebox';
import { Type } from '@sinclair/typebox';
import { accessActions } from '../../../domain';

const Actions = Type.Array(Type.Union(accessActions.map((a) => Type.Literal(a))), {
  default: [],
});

const Globs = (description: string) =>
  Type.Array(Type.String({ minLength: 1, maxLength: 512 }), { default: [], description });

/** One policy: these users and groups may take these actions on these repositories. */
export const AccessPolicySchema = Type.Object(
  {
    repositories: Globs('repository globs (`team/*`, `team/**`, `?`)'),
    users: Type.Array(Type.String({ minLength: 1, maxLength: 256 }), {
      default: [],
      description: 'user names; "*" = every authenticated user',
    }),
    groups: Type.Array(Type.String({ minLength: 1, maxLength: 256 }), { default: [] }),
    actions: Actions,
  },
  { additionalProperties: false },
);

/** A token issuer Shoal trusts besides itself (Harbor, docker_auth, an OIDC provider). */
export const TokenIssuerSchema = Type.Object(
  {
    issuer: Type.String({ minLength: 1, description: 'the `iss` its tokens carry' }),
    audience: Type.String({
      minLength: 1,
      description: 'the `aud` its tokens must carry (for Docker token servers: the service)',
    }),
    jwksUrl: Type.String({ default: '', description: 'its keys as a JWKS document' }),
    certificateFile: Type.String({
      default: '',
      description: 'or its signing certificates, PEM (a bundle: any of them)',
    }),
    access: Type.Union([Type.Literal('claims'), Type.Literal('policies')], {
      default: 'claims',
      description:
        'claims: the token`s `access` claim says what it may do (Docker token servers); ' +
        'policies: Shoal`s policies decide for its subject and groups (OIDC)',
    }),
    groupsClaim: Type.String({ default: 'groups', description: 'claim holding the groups' }),
  },
  { additionalProperties: false },
);

/**
 * `auth`: who may use a role's API (the proxy's registry, build-index's tags and rules).
 * Users log in with an htpasswd file (bcrypt) or bring a token: Shoal's own (from the
 * proxy's `/auth/token`) or one from a trusted issuer. What they may do is decided per
 * repository by `policies`; `admins` may do everything, and alone manage replication rules.
 */
export const AuthConfigSchema = Type.Object(
  {
    htpasswd: Type.Object(
      {
        file: Type.String({
          default: '',
          description: 'users, as `htpasswd -B` writes them (bcrypt only); re-read when changed',
        }),
      },
      { default: {} },
    ),
    groups: Type.Record(Type.String(), Type.Array(Type.String({ minLength: 1 })), {
      default: {},
      description: 'group name → its users (htpasswd users and token subjects)',
    }),
    robots: Type.Array(Type.String({ minLength: 1 }), {
      default: [],
      description: 'users that are robot accounts (CI): `robot:<name>` in the audit trail',
    }),
    token: Type.Object(
      {
        keyFile: Type.String({
          default: '',
          description:
            'PEM private key (EC P-256, RSA or Ed25519) that signs tokens; empty: a new key ' +
            'at each start (tokens die with the process; set it when several proxies serve)',
        }),
        lifetimeSeconds: Type.Integer({ default: 300, minimum: 30, maximum: 86_400 }),
        refreshLifetimeSeconds: Type.Integer({
          default: 86_400,
          minimum: 60,
          description: 'refresh tokens (POST /auth/token with access_type=offline)',
        }),
        issuer: Type.String({ default: 'shoal', minLength: 1, description: '`iss` of tokens' }),
        service: Type.String({
          default: 'shoal',
          minLength: 1,
          description: '`service` in challenges and `aud` of tokens',
        }),
        realm: Type.String({
          default: '',
          description:
            'token endpoint named in challenges; empty: this listener`s /auth/token as the ' +
            'client reached it. Set it to an external issuer`s endpoint to use only that one',
        }),
      },
      { default: {} },
    ),
    issuers: Type.Array(TokenIssuerSchema, { default: [] }),
    anonymous: Type.Object(
      {
        repositories: Globs('repositories anyone may access without credentials'),
        actions: Actions,
      },
      { default: {}, additionalProperties: false },
    ),
    admins: Type.Array(Type.String({ minLength: 1 }), {
      default: [],
      description: 'user names, or `group:<name>`',
    }),
    policies: Type.Array(AccessPolicySchema, { default: [] }),
    failedLogins: Type.Object(
      {
        delayMs: Type.Integer({
          default: 1000,
          minimum: 0,
          maximum: 60_000,
          description: 'a failed login is answered this much later (and counted)',
        }),
      },
      { default: {} },
    ),
  },
  { default: {} },
);

export type AuthConfig = Static<typeof AuthConfigSchema>;
export type TokenIssuerConfig = Static<typeof TokenIssuerSchema>;

import type { Static } from '@sinclair/typebox';
import { Type } from '@sinclair/typebox';
import { ShoalError } from '../../domain';
import type { ResponseHeaders } from '../../kit/http/transport';

/*
 * What every client of another OCI registry shares — the replicator pushing to one, the
 * `registry` blob store pulling from one: the authentication handshake of the Distribution
 * API (a `WWW-Authenticate` challenge answered with Basic credentials or a Bearer token from
 * the challenge's realm), the manifest `Accept` header and the OCI error body. Each client
 * keeps its own transport and its own mapping of failures to error codes.
 */

/** Credentials for one registry: basic (also used at a token endpoint) or a fixed token. */
export const RegistryCredentialSchema = Type.Union([
  Type.Object(
    {
      username: Type.String({ minLength: 1 }),
      password: Type.String(),
      /**
       * Other hosts (`host[:port]`) whose token endpoint may receive these credentials, when
       * the registry's challenge names a realm there (Docker Hub's `auth.docker.io`). No
       * other host ever does: not one named by a `Location`, a `Link` or another realm.
       */
      realmHosts: Type.Optional(Type.Array(Type.String({ minLength: 1 }))),
    },
    { additionalProperties: false },
  ),
  Type.Object({ token: Type.String({ minLength: 1 }) }, { additionalProperties: false }),
]);

export type RegistryCredential = Static<typeof RegistryCredentialSchema>;

export type Challenge = {
  readonly scheme: 'basic' | 'bearer';
  readonly params: Readonly<Record<string, string>>;
};

/** Parses `WWW-Authenticate: Bearer realm="…",service="…",scope="…"` (one challenge). */
export const parseChallenge = (header: string | undefined): Challenge | undefined => {
  if (header === undefined) return undefined;
  const match = /^\s*(\w+)\s*(.*)$/s.exec(header);
  if (match === null) return undefined;
  const scheme = (match[1] as string).toLowerCase();
  if (scheme !== 'basic' && scheme !== 'bearer') return undefined;
  const params: Record<string, string> = {};
  const re = /(\w+)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^,\s]*))/g;
  for (let m = re.exec(match[2] as string); m !== null; m = re.exec(match[2] as string)) {
    params[(m[1] as string).toLowerCase()] = (m[2] ?? m[3] ?? '').replace(/\\(.)/g, '$1');
  }
  return { scheme, params };
};

/** The first entry of an OCI error body (`{"errors":[{"code","message"}]}`), if it is one. */
export const parseOciError = (body: Buffer): { code?: string; message?: string } => {
  try {
    const parsed = JSON.parse(body.toString('utf8')) as {
      errors?: Array<{ code?: unknown; message?: unknown }>;
    };
    const first = parsed.errors?.[0];
    return {
      ...(typeof first?.code === 'string' && { code: first.code }),
      ...(typeof first?.message === 'string' && { message: first.message }),
    };
  } catch {
    return {};
  }
};

export const basicAuthorization = (c: { username: string; password: string }): string =>
  `Basic ${Buffer.from(`${c.username}:${c.password}`).toString('base64')}`;

/** An answer read whole, as the token endpoint's. */
export type BufferedResponse = {
  readonly status: number;
  readonly headers: ResponseHeaders;
  readonly body: Buffer;
};

export type RegistryAuthOptions = {
  /** The registry's base URL: a relative realm is resolved against it. */
  readonly baseUrl: string;
  readonly credential?: RegistryCredential;
  /** GET over the client's own transport (its connection errors are the client's). */
  readonly get: (url: URL, headers: Record<string, string>) => Promise<BufferedResponse>;
  /** The error for a token endpoint answer other than 200, in the client's codes. */
  readonly refused: (url: URL, response: BufferedResponse) => Error;
  /** Milliseconds since the epoch (default `Date.now`), for token expiry. */
  readonly now?: () => number;
};

/**
 * The authentication state of one registry client. It learns the scheme from the first
 * challenge and then authenticates every request up front: `Basic` with the credentials, or a
 * `Bearer` token for the request's scope, fetched from the challenge's realm (with the basic
 * credentials when there are some, else anonymously) and cached per scope until it expires.
 * A `{token}` credential is sent as a bearer token as is.
 */
export type RegistryAuth = {
  /**
   * The `Authorization` header for a request in `scope` to `url`, when there is one to send:
   * never to another host than the registry's (a `Location` or `Link` may name one).
   */
  header(scope: string, url?: URL): string | undefined;
  /**
   * Answers a 401's `WWW-Authenticate` challenge: fetches a token for `scope` or switches to
   * basic. True when the request is worth repeating; false when there is nothing to answer
   * with (no credentials for a basic challenge, a fixed token, an unknown scheme).
   */
  answer(wwwAuthenticate: string | undefined, scope: string): Promise<boolean>;
};

export const createRegistryAuth = (options: RegistryAuthOptions): RegistryAuth => {
  const { credential } = options;
  const now = options.now ?? Date.now;
  const host = new URL(options.baseUrl).host;
  let scheme: 'basic' | 'bearer' | undefined;
  const tokens = new Map<string, { token: string; expiresAt: number }>();

  const fetchToken = async (challenge: Challenge, scope: string): Promise<void> => {
    const realm = challenge.params['realm'];
    if (realm === undefined) {
      throw new ShoalError('DENIED', `${host} asks for a bearer token but names no realm`);
    }
    const url = new URL(realm, options.baseUrl);
    if (challenge.params['service'] !== undefined) {
      url.searchParams.set('service', challenge.params['service']);
    }
    const scopes = new Set(scope.split(' ').filter(Boolean));
    for (const s of (challenge.params['scope'] ?? '').split(' ').filter(Boolean)) scopes.add(s);
    for (const s of scopes) url.searchParams.append('scope', s);
    const headers: Record<string, string> = { accept: 'application/json' };
    // Credentials go to the registry's own host, or to a realm host configured for them;
    // any other realm is asked for an anonymous token.
    const trusted =
      url.host === host ||
      (credential !== undefined &&
        'username' in credential &&
        (credential.realmHosts ?? []).some((h) => h.toLowerCase() === url.host.toLowerCase()));
    if (credential !== undefined && 'username' in credential && trusted) {
      headers['authorization'] = basicAuthorization(credential);
    }
    const response = await options.get(url, headers);
    if (response.status !== 200) throw options.refused(url, response);
    let parsed: { token?: string; access_token?: string; expires_in?: number };
    try {
      parsed = JSON.parse(response.body.toString('utf8')) as typeof parsed;
    } catch {
      throw new ShoalError('DENIED', `${url.host}: the token endpoint did not answer JSON`);
    }
    const token = parsed.token ?? parsed.access_token;
    if (token === undefined || token === '') {
      throw new ShoalError('DENIED', `${url.host}: the token endpoint gave no token`);
    }
    // Renew a little early: a token that expires mid-request costs a failed request.
    const lifetime = Math.max(10, parsed.expires_in ?? 60) - 5;
    tokens.set(scope, { token, expiresAt: now() + lifetime * 1000 });
  };

  return {
    header(scope, url) {
      if (url !== undefined && url.host !== host) return undefined;
      if (credential !== undefined && 'token' in credential) return `Bearer ${credential.token}`;
      if (scheme === 'basic' && credential !== undefined) return basicAuthorization(credential);
      if (scheme === 'bearer') {
        const cached = tokens.get(scope);
        if (cached !== undefined && cached.expiresAt > now()) return `Bearer ${cached.token}`;
      }
      return undefined;
    },

    async answer(wwwAuthenticate, scope) {
      if (credential !== undefined && 'token' in credential) return false;
      const challenge = parseChallenge(wwwAuthenticate);
      if (challenge?.scheme === 'bearer') {
        scheme = 'bearer';
        await fetchToken(challenge, scope);
        return true;
      }
      if (challenge?.scheme === 'basic' && credential !== undefined) {
        scheme = 'basic';
        return true;
      }
      return false;
    },
  };
};

import {
  X509Certificate,
  createPrivateKey,
  createPublicKey,
  generateKeyPairSync,
} from 'node:crypto';
import type { KeyObject } from 'node:crypto';
import { randomUUID } from 'node:crypto';
import { readFileSync } from 'node:fs';
import type { JWK, JWTPayload, JWTVerifyGetKey } from 'jose';
import {
  SignJWT,
  calculateJwkThumbprint,
  createRemoteJWKSet,
  decodeJwt,
  exportJWK,
  jwtVerify,
} from 'jose';
import type { ResourceAccess } from '../../../domain';
import { ShoalError } from '../../../domain';
import type { TokenIssuerConfig } from './authConfig';

/**
 * Tokens as the Docker token protocol has them: a JWT with `iss`, `sub`, `aud` (the service),
 * `exp`, `nbf`, `iat`, `jti` and `access: [{type, name, actions}]`. Shoal's tokens add `kind`
 * (`user` or `robot`) and, for refresh tokens, `typ: "refresh"`.
 */
export type TokenClaims = {
  readonly subject: string;
  /** `anonymous`: a token asked for without credentials (what anonymous callers may). */
  readonly kind: 'user' | 'robot' | 'anonymous';
  readonly access: readonly ResourceAccess[];
};

/** A token that checked out: who it is for and what it may do. */
export type VerifiedToken = {
  readonly issuer: string;
  readonly subject: string;
  readonly kind: 'user' | 'robot' | 'anonymous';
  /** Groups the token names (an external issuer's groups claim). */
  readonly groups: readonly string[];
  /**
   * What the token allows, when the token decides (Shoal's own, whose grants are also checked
   * against the policies at use, and Docker token servers'); undefined: the policies decide.
   */
  readonly access?: readonly ResourceAccess[];
  /** Whether the policies must also allow what the token grants (Shoal's own tokens). */
  readonly checkPolicies: boolean;
};

const invalid = (why: string) => new ShoalError('UNAUTHORIZED', `invalid token: ${why}`);

/** Leeway for clocks that disagree, seconds. */
const clockTolerance = 30;

/** The algorithm a key signs with: the one its type has, for Docker and OIDC verifiers. */
const algorithmOf = (key: KeyObject): string => {
  const type = key.asymmetricKeyType;
  if (type === 'ec') {
    const curve = key.asymmetricKeyDetails?.namedCurve;
    if (curve === 'prime256v1') return 'ES256';
    if (curve === 'secp384r1') return 'ES384';
    throw new ShoalError('CONFIG_INVALID', `token key: EC curve ${curve} is not supported`);
  }
  if (type === 'rsa') return 'RS256';
  if (type === 'ed25519') return 'EdDSA';
  throw new ShoalError('CONFIG_INVALID', `token key: ${type} keys are not supported`);
};

/** Reads a PEM private key (PKCS#8, SEC1 EC or PKCS#1 RSA). */
const readPrivateKey = (file: string): KeyObject => {
  try {
    return createPrivateKey(readFileSync(file));
  } catch (error) {
    throw new ShoalError(
      'CONFIG_INVALID',
      `auth.token.keyFile ${file}: not a PEM private key (${(error as Error).message})`,
    );
  }
};

export type TokenSigner = {
  readonly issuer: string;
  readonly audience: string;
  readonly algorithm: string;
  readonly publicKey: KeyObject;
  /** Signs an access token (or a refresh token) that expires after `lifetimeSeconds`. */
  sign(
    claims: TokenClaims,
    lifetimeSeconds: number,
    options?: { refresh?: boolean },
  ): Promise<string>;
  /** The public key as a JWKS document (`/auth/jwks`), for agents and other verifiers. */
  jwks(): Promise<{ keys: JWK[] }>;
  /** Checks a refresh token this signer issued; `UNAUTHORIZED` otherwise. */
  verifyRefresh(token: string): Promise<{ subject: string; kind: 'user' | 'robot' }>;
};

/**
 * The signer of Shoal's tokens: the key in `keyFile`, or (empty) a fresh P-256 key — fine for
 * one proxy whose tokens may die with it, not for several behind one name.
 */
export const createTokenSigner = (options: {
  keyFile: string;
  issuer: string;
  audience: string;
  now?: () => number;
}): TokenSigner => {
  const privateKey =
    options.keyFile === ''
      ? generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey
      : readPrivateKey(options.keyFile);
  const publicKey = createPublicKey(privateKey);
  const algorithm = algorithmOf(privateKey);
  const now = options.now ?? Date.now;
  let jwk: Promise<JWK> | undefined;
  const publicJwk = () =>
    (jwk ??= (async () => {
      const exported = await exportJWK(publicKey);
      return {
        ...exported,
        kid: await calculateJwkThumbprint(exported),
        alg: algorithm,
        use: 'sig',
      };
    })());

  return {
    issuer: options.issuer,
    audience: options.audience,
    algorithm,
    publicKey,
    async sign(claims, lifetimeSeconds, signOptions = {}) {
      const issuedAt = Math.floor(now() / 1000);
      const { kid } = await publicJwk();
      return new SignJWT({
        access: claims.access.map((a) => ({ type: a.type, name: a.name, actions: [...a.actions] })),
        kind: claims.kind,
        ...(signOptions.refresh && { typ: 'refresh' }),
      })
        .setProtectedHeader({ alg: algorithm, typ: 'JWT', ...(kid !== undefined && { kid }) })
        .setIssuer(options.issuer)
        .setSubject(claims.subject)
        .setAudience(options.audience)
        .setIssuedAt(issuedAt)
        .setNotBefore(issuedAt - 1)
        .setExpirationTime(issuedAt + lifetimeSeconds)
        .setJti(randomUUID())
        .sign(privateKey);
    },
    async jwks() {
      return { keys: [await publicJwk()] };
    },
    async verifyRefresh(token) {
      const { payload } = await jwtVerify(token, publicKey, {
        issuer: options.issuer,
        audience: options.audience,
        algorithms: [algorithm],
        clockTolerance,
        requiredClaims: ['sub', 'exp'],
      }).catch((error: unknown) => {
        throw invalid((error as Error).message);
      });
      if (payload['typ'] !== 'refresh') throw invalid('not a refresh token');
      return {
        subject: payload.sub as string,
        kind: payload['kind'] === 'robot' ? 'robot' : 'user',
      };
    },
  };
};

/** Reads every certificate of a PEM bundle: any of their keys may have signed a token. */
const certificateKeys = (file: string): KeyObject[] => {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (error) {
    throw new ShoalError('CONFIG_INVALID', `cannot read ${file}: ${(error as Error).message}`);
  }
  const blocks = text.match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g);
  if (blocks === null) {
    throw new ShoalError('CONFIG_INVALID', `${file} holds no PEM certificate`);
  }
  return blocks.map((pem) => new X509Certificate(pem).publicKey);
};

const accessClaim = (payload: JWTPayload): ResourceAccess[] => {
  const raw = payload['access'];
  if (raw === undefined) return [];
  if (!Array.isArray(raw)) throw invalid('access is not a list');
  return raw.map((entry: unknown) => {
    const e = entry as { type?: unknown; name?: unknown; actions?: unknown };
    if (
      typeof e?.type !== 'string' ||
      typeof e.name !== 'string' ||
      !Array.isArray(e.actions) ||
      !e.actions.every((a) => typeof a === 'string')
    ) {
      throw invalid('access entries need type, name and actions');
    }
    return { type: e.type, name: e.name, actions: e.actions as string[] };
  });
};

/** A verifier of one issuer's tokens. */
type IssuerCheck = {
  readonly issuer: string;
  verify(token: string): Promise<VerifiedToken>;
};

const ownIssuer = (own: { issuer: string; audience: string; publicKey: KeyObject }) => ({
  issuer: own.issuer,
  async verify(token: string): Promise<VerifiedToken> {
    const { payload } = await jwtVerify(token, own.publicKey, {
      issuer: own.issuer,
      audience: own.audience,
      algorithms: [algorithmOf(own.publicKey)],
      clockTolerance,
      requiredClaims: ['sub', 'exp'],
    }).catch((error: unknown) => {
      throw invalid((error as Error).message);
    });
    if (payload['typ'] === 'refresh') throw invalid('a refresh token is not an access token');
    return {
      issuer: own.issuer,
      subject: payload.sub as string,
      kind:
        payload['kind'] === 'robot' || payload['kind'] === 'anonymous' ? payload['kind'] : 'user',
      groups: [],
      access: accessClaim(payload),
      checkPolicies: true,
    };
  },
});

const externalIssuer = (config: TokenIssuerConfig): IssuerCheck => {
  if ((config.jwksUrl === '') === (config.certificateFile === '')) {
    throw new ShoalError(
      'CONFIG_INVALID',
      `auth.issuers "${config.issuer}": give exactly one of jwksUrl and certificateFile`,
    );
  }
  const options = {
    issuer: config.issuer,
    audience: config.audience,
    clockTolerance,
    requiredClaims: ['sub', 'exp'],
  };
  const verifyWith: (token: string) => Promise<JWTPayload> =
    config.jwksUrl !== ''
      ? (() => {
          const keys: JWTVerifyGetKey = createRemoteJWKSet(new URL(config.jwksUrl));
          return async (token) => (await jwtVerify(token, keys, options)).payload;
        })()
      : (() => {
          const keys = certificateKeys(config.certificateFile);
          return async (token) => {
            let last: unknown;
            for (const key of keys) {
              try {
                return (await jwtVerify(token, key, options)).payload;
              } catch (error) {
                last = error;
              }
            }
            throw last;
          };
        })();
  return {
    issuer: config.issuer,
    async verify(token) {
      const payload = await verifyWith(token).catch((error: unknown) => {
        throw invalid((error as Error).message);
      });
      const groups = payload[config.groupsClaim];
      return {
        issuer: config.issuer,
        subject: payload.sub as string,
        kind: 'user',
        groups: Array.isArray(groups) ? groups.filter((g) => typeof g === 'string') : [],
        ...(config.access === 'claims' && { access: accessClaim(payload) }),
        checkPolicies: config.access === 'policies',
      };
    },
  };
};

export type TokenVerifier = {
  /** Checks a bearer token; `UNAUTHORIZED` when no trusted issuer vouches for it. */
  verify(token: string): Promise<VerifiedToken>;
};

/**
 * Verifies tokens of Shoal's own issuer (its public key) and of the configured external
 * issuers (JWKS URL or certificate bundle), each with its `iss` and `aud` checked. The issuer
 * is picked by the token's (unverified) `iss`; its signature then has to check out with that
 * issuer's keys.
 */
export const createTokenVerifier = (options: {
  own?: { issuer: string; audience: string; publicKey: KeyObject };
  issuers: readonly TokenIssuerConfig[];
}): TokenVerifier => {
  const checks = new Map<string, IssuerCheck>();
  if (options.own !== undefined) checks.set(options.own.issuer, ownIssuer(options.own));
  for (const config of options.issuers) {
    if (checks.has(config.issuer)) {
      throw new ShoalError('CONFIG_INVALID', `auth.issuers: "${config.issuer}" is there twice`);
    }
    checks.set(config.issuer, externalIssuer(config));
  }
  return {
    async verify(token) {
      let issuer: unknown;
      try {
        issuer = decodeJwt(token).iss;
      } catch {
        throw invalid('not a JWT');
      }
      const check = typeof issuer === 'string' ? checks.get(issuer) : undefined;
      if (check === undefined) throw invalid('from an issuer this service does not trust');
      return check.verify(token);
    },
  };
};

/**
 * Reads the public key of a PEM file: a public key, a certificate, or a private key (the
 * signing key shared with a verifier).
 */
export const readPublicKey = (file: string): KeyObject => {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (error) {
    throw new ShoalError('CONFIG_INVALID', `cannot read ${file}: ${(error as Error).message}`);
  }
  if (text.includes('BEGIN CERTIFICATE')) return new X509Certificate(text).publicKey;
  return createPublicKey(text.includes('PRIVATE KEY') ? createPrivateKey(text) : text);
};

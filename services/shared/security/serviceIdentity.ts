import { createPrivateKey, createPublicKey, randomUUID } from 'node:crypto';
import type { KeyObject } from 'node:crypto';
import { readFileSync } from 'node:fs';
import type { TLSSocket } from 'node:tls';
import type { FastifyRequest } from 'fastify';
import { SignJWT, decodeJwt, jwtVerify } from 'jose';
import { ShoalError } from '../../../domain';
import type { Authenticator } from './authenticate';
import { roleUriPrefix } from './clusterCa';
import type { ServiceRole, Subject } from './subject';
import { serviceRoles } from './subject';

// Cluster identities: how a Shoal process proves to another which role it is. Either a client
// certificate issued by the cluster CA (mTLS: the role is the certificate's URI SAN
// `shoal:role:<role>`, the name its common name `<role>/<name>`), or a service token: a JWT
// signed with the cluster's Ed25519 service key, `sub` = `<role>/<name>`, minted by each
// process from the key file in its config, short-lived.

/** The issuer of service tokens; a bearer token with another issuer is a user's. */
export const serviceTokenIssuer = 'shoal-service';
/** Their audience: Shoal's services (a user's token for the registry is not one). */
const audience = 'shoal-services';

const isRole = (value: string): value is ServiceRole => serviceRoles.includes(value as ServiceRole);

/** The service a cluster certificate names, or undefined when it names no role. */
export const serviceOfCertificate = (certificate: {
  subjectaltname?: string;
  subject?: { CN?: string | string[] };
}): { role: ServiceRole; name: string } | undefined => {
  const uris = (certificate.subjectaltname ?? '')
    .split(/,\s*/)
    .filter((entry) => entry.startsWith(`URI:${roleUriPrefix}`))
    .map((entry) => entry.slice(`URI:${roleUriPrefix}`.length));
  const role = uris.find(isRole);
  if (role === undefined) return undefined;
  const cn = certificate.subject?.CN;
  const common = Array.isArray(cn) ? cn[0] : cn;
  const name = common?.startsWith(`${role}/`) ? common.slice(role.length + 1) : (common ?? role);
  return { role, name: name === '' ? role : name };
};

/**
 * mTLS: a request over a connection whose client certificate the cluster CA issued is that
 * service. A connection without a certificate is left to the next authenticator; one whose
 * certificate does not verify is refused (401); a verified certificate that names no role
 * (a person's, say) is left to the next authenticator too.
 */
export const mtlsAuthenticator = (): Authenticator => ({
  name: 'mtls',
  authenticate(request: FastifyRequest): Subject | undefined {
    const socket = request.raw.socket as Partial<TLSSocket>;
    if (socket.encrypted !== true || socket.getPeerCertificate === undefined) return undefined;
    const certificate = socket.getPeerCertificate();
    if (certificate === null || Object.keys(certificate).length === 0) return undefined;
    if (socket.authorized !== true) {
      throw new ShoalError(
        'UNAUTHORIZED',
        `client certificate refused: ${String(socket.authorizationError ?? 'not trusted')}`,
      );
    }
    const service = serviceOfCertificate(certificate);
    return service === undefined ? undefined : { kind: 'service', ...service, address: request.ip };
  },
});

/** Mints and checks the service tokens of one cluster (its key) for one process. */
export type ServiceTokens = {
  /** A token for this process (`sub` = `<role>/<name>`), fresh for at least half its life. */
  readonly token: () => Promise<string>;
  /** The service a token stands for; throws `UNAUTHORIZED` when it does not check out. */
  readonly verify: (token: string) => Promise<{ role: ServiceRole; name: string }>;
};

/** Reads the cluster's Ed25519 service key (PEM, PKCS#8). */
export const readServiceKey = (path: string): KeyObject => {
  let key: KeyObject;
  try {
    key = createPrivateKey(readFileSync(path));
  } catch (error) {
    throw new ShoalError(
      'CONFIG_INVALID',
      `cannot read the service key ${path}: ${(error as Error).message}`,
    );
  }
  if (key.asymmetricKeyType !== 'ed25519') {
    throw new ShoalError('CONFIG_INVALID', `the service key ${path} is not an Ed25519 key`);
  }
  return key;
};

export const createServiceTokens = (options: {
  key: KeyObject;
  /** Who this process is; omitted: it only checks tokens. */
  self?: { role: ServiceRole; name: string };
  ttlSeconds: number;
  now?: () => number;
}): ServiceTokens => {
  const now = options.now ?? Date.now;
  const publicKey = createPublicKey(options.key);
  let cached: { token: string; refreshAt: number } | undefined;
  return {
    token: async () => {
      const self = options.self;
      if (self === undefined) throw new ShoalError('INTERNAL', 'this process mints no tokens');
      const at = now();
      if (cached !== undefined && at < cached.refreshAt) return cached.token;
      const issuedAt = Math.floor(at / 1000);
      const token = await new SignJWT({})
        .setProtectedHeader({ alg: 'EdDSA', typ: 'JWT' })
        .setIssuer(serviceTokenIssuer)
        .setAudience(audience)
        .setSubject(`${self.role}/${self.name}`)
        .setIssuedAt(issuedAt)
        .setExpirationTime(issuedAt + options.ttlSeconds)
        .setJti(randomUUID())
        .sign(options.key);
      cached = { token, refreshAt: at + (options.ttlSeconds * 1000) / 2 };
      return token;
    },
    verify: async (token) => {
      let subject: string | undefined;
      try {
        const { payload } = await jwtVerify(token, publicKey, {
          issuer: serviceTokenIssuer,
          audience,
          algorithms: ['EdDSA'],
          clockTolerance: 30,
          currentDate: new Date(now()),
          requiredClaims: ['exp', 'sub'],
        });
        subject = payload.sub;
      } catch (error) {
        throw new ShoalError('UNAUTHORIZED', `service token refused: ${(error as Error).message}`);
      }
      const [role, ...rest] = (subject ?? '').split('/');
      const name = rest.join('/');
      if (role === undefined || !isRole(role) || name === '') {
        throw new ShoalError('UNAUTHORIZED', 'service token names no role');
      }
      return { role, name };
    },
  };
};

/** The bearer token of a request, if it has one. */
export const bearerOf = (request: FastifyRequest): string | undefined => {
  const header = request.headers.authorization;
  if (header === undefined) return undefined;
  const match = /^Bearer\s+([A-Za-z0-9._~+/=-]+)\s*$/i.exec(header);
  return match?.[1];
};

/**
 * Service tokens: a bearer token issued by `shoal-service` is checked with the cluster's key
 * (a bad one is a 401); any other bearer token is left to the users' authenticators.
 */
export const serviceTokenAuthenticator = (tokens: ServiceTokens): Authenticator => ({
  name: 'service-token',
  async authenticate(request) {
    const token = bearerOf(request);
    if (token === undefined) return undefined;
    let issuer: string | undefined;
    try {
      issuer = decodeJwt(token).iss;
    } catch {
      return undefined;
    }
    if (issuer !== serviceTokenIssuer) return undefined;
    const service = await tokens.verify(token);
    return { kind: 'service', ...service, address: request.ip };
  },
});

import type { Static } from '@sinclair/typebox';
import { Type } from '@sinclair/typebox';

// The config blocks of a role's listeners and cluster identity, the same in every role (see
// roleConfig): `tls` for the role's listener, `security` for who may call it and how it proves
// itself when it calls others, `http` for the listener's limits, `admin` for the optional
// listener of /metrics and detailed /health.

/** `tls`: a listener's certificate and how it asks clients for theirs. */
export const TlsConfigSchema = Type.Object(
  {
    certFile: Type.String({
      default: '',
      description: 'PEM certificate chain of this listener; empty: plain HTTP',
    }),
    keyFile: Type.String({ default: '', description: 'PEM private key of certFile' }),
    clientCaFile: Type.String({
      default: '',
      description:
        'PEM CA bundle client certificates are checked against (the cluster CA); ' +
        'a client holding one is a cluster service (mTLS)',
    }),
    clientAuth: Type.Union(
      [Type.Literal('none'), Type.Literal('request'), Type.Literal('require')],
      {
        default: 'request',
        description:
          'none: ask no certificate; request: ask, and refuse a bad one; require: refuse ' +
          'a connection without a valid one (for roles only services call)',
      },
    ),
  },
  { default: {} },
);
export type TlsConfig = Static<typeof TlsConfigSchema>;

/** `security`: who may call this role, and the identity it presents to the others. */
export const SecurityConfigSchema = Type.Object(
  {
    mode: Type.Union([Type.Literal('required'), Type.Literal('open')], {
      default: 'required',
      description:
        'required (the default): internal APIs take only cluster identities, so a role ' +
        'needs tls.clientCaFile or security.serviceKeyFile to start; open: anyone who ' +
        'reaches the port (shoal dev, a trusted network)',
    }),
    caFile: Type.String({
      default: '',
      description:
        'PEM CA bundle the servers this role calls are checked against (empty: ' +
        'tls.clientCaFile, else the system roots)',
    }),
    certFile: Type.String({
      default: '',
      description: 'client certificate presented to other roles (empty: tls.certFile)',
    }),
    keyFile: Type.String({ default: '', description: 'its key (empty: tls.keyFile)' }),
    serviceKeyFile: Type.String({
      default: '',
      description:
        "the cluster's service-token key (Ed25519 PEM, `shoal certs init` writes one): " +
        'signs this role’s tokens and checks those of callers; empty: mTLS only',
    }),
    serviceTokenTtlSeconds: Type.Integer({
      default: 300,
      minimum: 30,
      maximum: 86400,
      description: 'lifetime of the service tokens this role mints',
    }),
  },
  { default: {} },
);
export type SecurityConfig = Static<typeof SecurityConfigSchema>;

/** `http`: limits of a listener, so slow or many clients cannot hold it. */
export const HttpLimitsSchema = Type.Object(
  {
    headersTimeoutMs: Type.Integer({
      default: 20_000,
      minimum: 1000,
      description: 'a request head must arrive within this (else 408 and closed)',
    }),
    idleTimeoutMs: Type.Integer({
      default: 120_000,
      minimum: 1000,
      description: 'a connection with no bytes either way for this long is closed',
    }),
    bodyTimeoutMs: Type.Integer({
      default: 30_000,
      minimum: 100,
      description:
        'a request body that stays below bodyMinBytesPerSecond for this long while the ' +
        'server waits for it is cut (a trickling client)',
    }),
    bodyMinBytesPerSecond: Type.Integer({
      default: 1024,
      minimum: 0,
      description: 'the slowest request body accepted (0: no minimum)',
    }),
    maxConnections: Type.Integer({
      default: 10_000,
      minimum: 0,
      description: 'open connections at most (0: no cap); more are closed at once',
    }),
    maxConnectionsPerAddress: Type.Integer({
      default: 1000,
      minimum: 0,
      description: 'open connections from one client address at most (0: no cap)',
    }),
  },
  { default: {} },
);
export type HttpLimits = Static<typeof HttpLimitsSchema>;

/** `admin`: a listener of its own for /metrics and the detailed /health. */
export const AdminConfigSchema = Type.Object(
  {
    enabled: Type.Boolean({
      default: false,
      description:
        'serve /metrics and the detailed /health on this listener; the main one then ' +
        'answers /health with the status only',
    }),
    host: Type.String({ default: '127.0.0.1' }),
    port: Type.Integer({ default: 0, minimum: 0, maximum: 65535, description: '0: any free port' }),
    tls: TlsConfigSchema,
  },
  { default: {} },
);
export type AdminConfig = Static<typeof AdminConfigSchema>;

import type { Static } from '@sinclair/typebox';
import { Type } from '@sinclair/typebox';
import type { RegistryCredential } from '../../adapters/registry/registryAuth';
import { RegistryCredentialSchema } from '../../adapters/registry/registryAuth';
import { ShoalError } from '../../domain';
import { roleConfig } from '../shared/roleConfig';
import { AuthConfigSchema } from '../shared/security/authConfig';

/**
 * The replicator's settings: the `replication` section of its role config, and of build-index's
 * when the replicator is mounted there (`replication.*`).
 */
export const ReplicationConfigSchema = Type.Object(
  {
    enabled: Type.Boolean({
      default: true,
      description: 'run the replicator in this build-index (one per data directory is active)',
    }),
    concurrency: Type.Integer({
      default: 8,
      minimum: 1,
      maximum: 64,
      description: 'tag changes replicated at once per rule (one tag is never done twice at once)',
    }),
    blobConcurrency: Type.Integer({
      default: 3,
      minimum: 1,
      maximum: 32,
      description: 'blobs of one image copied at once',
    }),
    chunkSizeBytes: Type.Integer({
      default: 4 * 1024 * 1024,
      minimum: 64 * 1024,
      description: 'blobs up to this size are uploaded in one request, larger ones in chunks',
    }),
    maxAttempts: Type.Integer({
      default: 0,
      minimum: 0,
      description: 'attempts per change before it is given up (recorded and skipped); 0: forever',
    }),
    backoff: Type.Object(
      {
        initialMs: Type.Integer({ default: 500, minimum: 1, description: 'first retry delay' }),
        maxMs: Type.Integer({ default: 60_000, minimum: 1, description: 'largest retry delay' }),
        multiplier: Type.Number({ default: 2, minimum: 1 }),
        jitter: Type.Number({
          default: 0.5,
          minimum: 0,
          maximum: 1,
          description: 'random fraction of each delay (0: none, 1: full jitter)',
        }),
      },
      { default: {} },
    ),
    timeoutMs: Type.Integer({
      default: 60_000,
      minimum: 100,
      description: 'idle timeout of one request to a destination or to the origins',
    }),
    caFile: Type.String({
      default: '',
      description:
        'PEM CA bundle https destinations are checked against (another cluster’s CA); ' +
        'empty: the system roots',
    }),
    allowedDestinations: Type.Array(Type.String({ minLength: 1, maxLength: 512 }), {
      default: [],
      description:
        'globs over destination URLs rules may name (`https://*.example.com`, ' +
        '`http://127.0.0.1:*`, `**` for any); a rule to another is refused when added and ' +
        'never replicated. Empty: none (shoal dev allows loopback)',
    }),
    credentials: Type.Union([Type.String(), Type.Record(Type.String(), RegistryCredentialSchema)], {
      default: {},
      description:
        'per destination host[:port]: {username, password} or {token}; sent to that host ' +
        'only (and to the token realms listed in realmHosts); in the environment ' +
        '(SHOAL_REPLICATION_CREDENTIALS) as JSON. Never written to the log',
    }),
    source: Type.Object(
      {
        originUrl: Type.String({
          default: '',
          description:
            'an origin of this cluster to ask for the ring; empty: the ring from the placement ' +
            'projection in the data directory (kept by an origin sharing it, as in shoal dev)',
        }),
        replicas: Type.Integer({
          default: 2,
          minimum: 1,
          description: 'origins that own each blob (read in rendezvous order)',
        }),
      },
      { default: {} },
    ),
    lock: Type.Object(
      {
        enabled: Type.Boolean({
          default: true,
          description:
            'one replicator per cluster runs: it holds <dataDir>/replicator.lock (SQLite log) ' +
            'or the Kafka group shoal-replicator.<cluster> (Kafka log)',
        }),
        leaseMs: Type.Integer({
          default: 15_000,
          minimum: 1000,
          description:
            'a lease not renewed for this long is taken over (on Kafka: the group session, at least 6 s)',
        }),
      },
      { default: {} },
    ),
    statusScanLimit: Type.Integer({
      default: 100_000,
      minimum: 100,
      description: 'events status reads past a rule position to find its oldest pending change',
    }),
  },
  { default: {} },
);

export type ReplicationConfig = Static<typeof ReplicationConfigSchema>;

/**
 * `shoal replicator`'s configuration, when it runs alone: the log and data directory it
 * follows, the listener of its rules and status API, and the `replication` section (the same
 * as build-index's, so one file can serve both). Every field has a default.
 */
export const ReplicatorConfigSchema = Type.Object({
  cluster: roleConfig.cluster(),
  dataDir: roleConfig.dataDir('log, projections'),
  listen: roleConfig.listen(5005),
  log: roleConfig.log(),
  readYourWrites: roleConfig.readYourWrites(
    'how long a read with Shoal-Min-Position waits before answering 503',
  ),
  replication: ReplicationConfigSchema,
  tls: roleConfig.tls(),
  security: roleConfig.security(),
  http: roleConfig.http(),
  admin: roleConfig.admin(),
  auth: AuthConfigSchema,
  logLevel: roleConfig.logLevel(),
  tracing: roleConfig.tracing(),
});

export type ReplicatorConfig = Static<typeof ReplicatorConfigSchema>;

/**
 * The credentials map, from the config (a mapping) or the environment (a JSON string).
 * Fails with `CONFIG_INVALID` at start, naming the problem but never a secret.
 */
export const credentialsOf = (
  config: Pick<ReplicationConfig, 'credentials'>,
): ReadonlyMap<string, RegistryCredential> => {
  let value: unknown = config.credentials;
  if (typeof value === 'string') {
    if (value.trim() === '') return new Map();
    try {
      value = JSON.parse(value);
    } catch {
      throw new ShoalError(
        'CONFIG_INVALID',
        'replication.credentials (SHOAL_REPLICATION_CREDENTIALS) is not valid JSON: want ' +
          '{"host:port": {"username": "…", "password": "…"} | {"token": "…"}}',
      );
    }
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    throw new ShoalError('CONFIG_INVALID', 'replication.credentials must map hosts to credentials');
  }
  const out = new Map<string, RegistryCredential>();
  for (const [host, credential] of Object.entries(value as Record<string, unknown>)) {
    const c = credential as Record<string, unknown> | null;
    const basic =
      c !== null &&
      typeof c === 'object' &&
      typeof c['username'] === 'string' &&
      c['username'] !== '';
    const token = c !== null && typeof c === 'object' && typeof c['token'] === 'string';
    const realmHosts = c?.['realmHosts'];
    const hosts =
      Array.isArray(realmHosts) && realmHosts.every((h) => typeof h === 'string')
        ? (realmHosts as string[])
        : undefined;
    if (basic && typeof c?.['password'] === 'string' && (realmHosts === undefined || hosts)) {
      out.set(host.toLowerCase(), {
        username: c['username'] as string,
        password: c['password'],
        ...(hosts !== undefined && { realmHosts: hosts }),
      });
    } else if (token && c?.['token'] !== '') {
      out.set(host.toLowerCase(), { token: c?.['token'] as string });
    } else {
      throw new ShoalError(
        'CONFIG_INVALID',
        `replication.credentials["${host}"]: want {username, password[, realmHosts]} or {token}`,
      );
    }
  }
  return out;
};

import type { Static } from '@sinclair/typebox';
import { Type } from '@sinclair/typebox';
import { roleConfig } from '../shared/roleConfig';
import { AuthConfigSchema } from '../shared/security/authConfig';

const url = (description: string) => Type.String({ default: '', description });

/**
 * The console's configuration. It reads the log and keeps its own projections (in
 * `<dataDir>/console/`); the services it names are asked for what is not on the log
 * (manifest contents from the proxy, swarms from the trackers, replication in flight from
 * the replicator) and watched for health. Every URL may be empty: the pages that need it
 * say so instead.
 */
export const ConsoleConfigSchema = Type.Object({
  cluster: roleConfig.cluster(),
  dataDir: roleConfig.dataDir('the log; the console keeps its projections in console/'),
  listen: roleConfig.listen(5007),
  log: roleConfig.log(),
  readYourWrites: roleConfig.readYourWrites(
    'how long a console read waits for its projections to reach a position it was shown',
  ),
  tls: roleConfig.tls(),
  security: roleConfig.security(),
  /** The registry's users and policies (the proxy's `auth`): who sees which repositories. */
  auth: AuthConfigSchema,
  http: roleConfig.http(),
  admin: roleConfig.admin(),
  tracing: roleConfig.tracing(),
  logLevel: roleConfig.logLevel(),
  services: Type.Object(
    {
      proxyUrl: url('the proxy: manifest contents (config, layers, platforms)'),
      buildIndexUrl: url('build-index: its health (tags cannot be written while it is down)'),
      replicatorUrl: url(
        'the replication rules and status API (empty: buildIndexUrl, where it is mounted)',
      ),
      trackers: Type.Array(Type.String(), {
        default: [],
        description: 'tracker URLs: the live swarms',
      }),
      origins: Type.Array(Type.String(), {
        default: [],
        description: 'origin URLs, watched for health (the ring itself comes from the log)',
      }),
      agents: Type.Array(Type.String(), {
        default: [],
        description: 'agent URLs, watched for health',
      }),
      timeoutMs: Type.Integer({
        default: 5000,
        minimum: 100,
        description: 'how long a call to another service may take',
      }),
    },
    { default: {} },
  ),
  placement: Type.Object(
    {
      replicas: Type.Integer({
        default: 2,
        minimum: 1,
        description: "the origins' replicas (R): which ring members own a blob",
      }),
    },
    { default: {} },
  ),
  live: Type.Object(
    {
      maxClients: Type.Integer({
        default: 64,
        minimum: 1,
        description: 'live views (server-sent event streams) served at once',
      }),
      healthIntervalMs: Type.Integer({
        default: 2000,
        minimum: 100,
        description: 'how often the services are checked while someone is watching',
      }),
      swarmIntervalMs: Type.Integer({
        default: 1000,
        minimum: 100,
        description: 'how often the trackers are asked for swarms while someone is watching',
      }),
      replayLimit: Type.Integer({
        default: 1000,
        minimum: 0,
        description:
          'events a reconnecting live view is sent to catch up; further behind, it reloads',
      }),
    },
    { default: {} },
  ),
});

export type ConsoleConfig = Static<typeof ConsoleConfigSchema>;

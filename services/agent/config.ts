import type { Static } from '@sinclair/typebox';
import { Type } from '@sinclair/typebox';
import { BandwidthConfigSchema } from '../../p2p/bandwidth';
import { SchedulerConfigSchema } from '../../p2p/scheduler';
import { roleConfig } from '../shared/roleConfig';

const GiB = 1024 * 1024 * 1024;

/**
 * agent configuration. Every field has a default; `shoal agent --help` lists them with their
 * environment variables (`trackers.urls` ← `SHOAL_TRACKERS_URLS`, comma-separated, …).
 */
export const AgentConfigSchema = Type.Object({
  id: Type.String({
    default: '1',
    minLength: 1,
    maxLength: 64,
    pattern: '^[A-Za-z0-9._-]+$',
    description: 'agent name; its files live in <dataDir>/agent-<id>/',
  }),
  dataDir: roleConfig.dataDir('blob cache'),
  listen: roleConfig.listen(5001, {
    hostDescription: 'the registry listens here: containerd and docker on this host pull from it',
  }),
  p2p: Type.Object(
    {
      host: Type.String({
        default: '',
        description: 'address the peer port listens on; empty: the registry listen host',
      }),
      port: Type.Integer({
        default: 0,
        minimum: 0,
        maximum: 65535,
        description: 'peer port (TCP); 0: any free port',
      }),
      advertiseHost: Type.String({
        default: '',
        description: 'host other peers dial; empty: the peer listen host (not a wildcard)',
      }),
      zone: Type.String({
        default: '',
        maxLength: 64,
        pattern: '^[A-Za-z0-9._:/-]*$',
        description:
          "this host's zone (rack, hall, cloud zone), sent to the tracker, which hands out " +
          'peers of the same zone first; empty: none',
      }),
      bandwidth: BandwidthConfigSchema,
      scheduler: SchedulerConfigSchema,
    },
    { default: {} },
  ),
  trackers: Type.Object(
    {
      urls: Type.Array(Type.String({ minLength: 1 }), {
        default: [],
        description:
          'tracker URLs; each blob uses the one its digest ranks first (rendezvous hashing), ' +
          'the next when that one is down',
      }),
      timeoutMs: Type.Integer({ default: 10_000, minimum: 100 }),
    },
    { default: {} },
  ),
  buildIndex: Type.Object(
    {
      url: Type.String({
        default: '',
        description: 'build-index URL: tags are resolved there on every request (never cached)',
      }),
      urls: Type.Array(Type.String({ minLength: 1 }), {
        default: [],
        description:
          'more build-index instances of this cluster (after url): one that cannot be ' +
          'reached costs a retry on the next',
      }),
    },
    { default: {} },
  ),
  proxy: Type.Object(
    {
      url: Type.String({
        default: '',
        description:
          'proxy URL manifests are read from (small, by digest); empty: manifests come ' +
          'through the swarm like layers',
      }),
    },
    { default: {} },
  ),
  cache: Type.Object(
    {
      quotaBytes: Type.Integer({
        default: 20 * GiB,
        minimum: 1,
        description:
          'blob cache capacity; least recently used blobs are evicted, never one being ' +
          'downloaded, served or seeded',
      }),
      fsync: Type.Boolean({
        default: true,
        description: 'make downloaded pieces durable (resume after a crash) before completing',
      }),
      verifyDigest: Type.Boolean({
        default: false,
        description:
          'read a completed blob back and check its whole digest; false: only when the ' +
          'download resumed from disk, else the digest check is derived from the pieces, ' +
          'each checked against its SHA-256 in the metainfo as it arrived (one hash per byte)',
      }),
      highWatermarkPercent: Type.Number({
        default: 90,
        minimum: 0,
        maximum: 100,
        description:
          'above this much of the disk in use, unpinned blobs are evicted least recently used ' +
          'first down to lowWatermarkPercent (0: off)',
      }),
      lowWatermarkPercent: Type.Number({ default: 80, minimum: 0, maximum: 100 }),
      idleDropMs: Type.Integer({
        default: 7 * 24 * 3600_000,
        minimum: 0,
        description:
          'a finished blob no container pulled for this long leaves its swarm and the cache ' +
          '(0: never)',
      }),
      checkIntervalMs: Type.Integer({
        default: 60_000,
        minimum: 10,
        description: 'how often the disk and idle blobs are checked',
      }),
    },
    { default: {} },
  ),
  download: Type.Object(
    {
      timeoutMs: Type.Integer({
        default: 600_000,
        minimum: 1000,
        description: 'a blob that is not complete after this long fails (the swarm is left)',
      }),
    },
    { default: {} },
  ),
  tls: roleConfig.tls(),
  security: roleConfig.security(),
  http: roleConfig.http(),
  admin: roleConfig.admin(),
  auth: Type.Object(
    {
      required: Type.Boolean({
        default: false,
        description:
          'pulls need a token from the proxy (the challenge names its token endpoint; ' +
          'docker login to the proxy): a private image is then not readable by any process ' +
          'on the host. Needs proxy.url',
      }),
      realm: Type.String({
        default: '',
        description: 'token endpoint named in challenges; empty: <proxy.url>/auth/token',
      }),
      jwksUrl: Type.String({
        default: '',
        description: "the proxy's token keys; empty: <proxy.url>/auth/jwks",
      }),
      issuer: Type.String({ default: 'shoal', description: "the proxy's auth.token.issuer" }),
      service: Type.String({ default: 'shoal', description: "the proxy's auth.token.service" }),
    },
    { default: {} },
  ),
  logLevel: roleConfig.logLevel(),
  tracing: roleConfig.tracing(),
});

export type AgentConfig = Static<typeof AgentConfigSchema>;

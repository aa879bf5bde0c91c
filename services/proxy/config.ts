import type { Static } from '@sinclair/typebox';
import { Type } from '@sinclair/typebox';
import { manifestMaxBytes } from '../../domain';
import { roleConfig } from '../shared/roleConfig';
import { AuthConfigSchema } from '../shared/security/authConfig';

/** proxy configuration. Every field has a default; `shoal proxy --help` lists them. */
export const ProxyConfigSchema = Type.Object({
  cluster: roleConfig.cluster(),
  dataDir: roleConfig.dataDir('log, projections'),
  listen: roleConfig.listen(5000),
  log: roleConfig.log(),
  origins: Type.Object(
    {
      urls: Type.Array(Type.String({ minLength: 1 }), {
        default: [],
        description:
          'origin base URLs; the ring is asked of the first. Empty: the ring from the log ' +
          '(OriginJoined/OriginLeft, the placement projection)',
      }),
      replicas: Type.Integer({
        default: 2,
        minimum: 1,
        description: 'origins each blob is written to (top R owners on the rendezvous ring)',
      }),
    },
    { default: {} },
  ),
  buildIndex: Type.Object(
    {
      url: Type.String({
        default: '',
        description:
          'build-index base URL for tags; empty: tags are read and written in-process ' +
          'on the log, with the build-index projection kept by the proxy',
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
  limits: Type.Object(
    {
      manifestMaxBytes: Type.Integer({
        default: manifestMaxBytes,
        minimum: 1024,
        maximum: 64 * 1024 * 1024,
        description: 'largest manifest accepted (larger: 413 SIZE_INVALID)',
      }),
      manifestCacheBytes: Type.Integer({
        default: 64 * 1024 * 1024,
        minimum: 0,
        description: 'memory for manifest bytes served recently (content addressed, LRU)',
      }),
    },
    { default: {} },
  ),
  gc: Type.Object(
    {
      referenceWindowMs: Type.Integer({
        default: 60_000,
        minimum: 1,
        description:
          'a manifest push records its manifest within this long of referencing its blobs, ' +
          "else it fails (retriable); GC's gc.graceMs must be at least 4 × this",
      }),
    },
    { default: {} },
  ),
  pullThrough: Type.Object(
    {
      tagRecheckSeconds: Type.Number({
        default: 300,
        minimum: 0,
        description:
          'a tag pulled through from an upstream registry is asked of the upstream again ' +
          '(a HEAD) on a pull this long after its last check, and moved when it moved there; ' +
          '0: on every pull. Digest pulls are never rechecked',
      }),
      tagRecheckWaitMs: Type.Integer({
        default: 5000,
        minimum: 0,
        description:
          'a pull waits this long for a recheck, then is answered the last known digest ' +
          '(the recheck goes on); 0: no limit',
      }),
    },
    { default: {} },
  ),
  readYourWrites: roleConfig.readYourWrites(),
  tls: roleConfig.tls(),
  security: roleConfig.security(),
  http: roleConfig.http(),
  admin: roleConfig.admin(),
  auth: AuthConfigSchema,
  logLevel: roleConfig.logLevel(),
  tracing: roleConfig.tracing(),
});

export type ProxyConfig = Static<typeof ProxyConfigSchema>;

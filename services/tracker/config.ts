import type { Static } from '@sinclair/typebox';
import { Type } from '@sinclair/typebox';
import { roleConfig } from '../shared/roleConfig';

/**
 * tracker configuration. Every field has a default; `shoal tracker --help` lists them with
 * their environment variables (`announce.intervalMs` ← `SHOAL_ANNOUNCE_INTERVAL_MS`, …).
 * A tracker keeps no durable state: peers are soft state with a TTL, metainfo a cache.
 */
export const TrackerConfigSchema = Type.Object({
  listen: roleConfig.listen(5004),
  advertiseUrl: Type.String({
    default: '',
    description:
      'URL origins announce to (sent when the tracker asks them to join a swarm); empty: ' +
      'the listen address, which must then not be a wildcard',
  }),
  origins: Type.Object(
    {
      urls: Type.Array(Type.String({ minLength: 1 }), {
        default: [],
        description:
          'origin URLs; the ring (members, replicas) is read from the first that answers, ' +
          'and metainfo from the owners of each digest',
      }),
      timeoutMs: Type.Integer({
        default: 10_000,
        minimum: 100,
        description: 'timeout of one request to an origin',
      }),
      ringTtlMs: Type.Integer({
        default: 2000,
        minimum: 0,
        description: 'how long the ring read from an origin is reused',
      }),
    },
    { default: {} },
  ),
  announce: Type.Object(
    {
      intervalMs: Type.Integer({
        default: 3000,
        minimum: 50,
        description: 'announce interval handed to peers (Kraken: 3 s)',
      }),
      maxIntervalMs: Type.Integer({
        default: 0,
        minimum: 0,
        description:
          'announce intervals back off to this once a peer has peers (each answer doubles ' +
          'the last); complete peers and origins get it at once; 0: four times intervalMs',
      }),
      emptyIntervalMs: Type.Integer({
        default: 500,
        minimum: 50,
        description: 'interval handed to a peer that got no peers (swarm forming)',
      }),
      peerTtlMs: Type.Integer({
        default: 0,
        minimum: 0,
        description:
          'a peer that stopped announcing is dropped after this; 0: three intervals ' +
          '(Kraken keeps peers 5 hours: issue #293)',
      }),
      handoutSize: Type.Integer({
        default: 10,
        minimum: 1,
        maximum: 1000,
        description: 'most (non-origin) peers in one answer, a random subset',
      }),
      sameZoneShare: Type.Number({
        default: 0.8,
        minimum: 0,
        maximum: 1,
        description:
          "share of an answer taken from the announcer's zone (peers that sent the same " +
          '`zone`), the rest from the whole swarm so that every zone still gets pieces ' +
          'first held elsewhere; 0: zones ignored',
      }),
      originsBelowComplete: Type.Integer({
        default: 3,
        minimum: 0,
        description:
          'origins are added to answers while fewer than this many complete agents are in ' +
          'the swarm (they are seeders of last resort)',
      }),
      originJoinTimeoutMs: Type.Integer({
        default: 3000,
        minimum: 100,
        description: 'how long an announce waits for the owning origins to join its swarm',
      }),
      originJoinRetryMs: Type.Integer({
        default: 2000,
        minimum: 0,
        description: 'least time between two requests to the origins to join one swarm',
      }),
    },
    { default: {} },
  ),
  metainfo: Type.Object(
    {
      cacheEntries: Type.Integer({
        default: 10_000,
        minimum: 1,
        description: 'metainfo documents kept (least recently used dropped)',
      }),
    },
    { default: {} },
  ),
  tls: roleConfig.tls(),
  security: roleConfig.security(),
  http: roleConfig.http(),
  admin: roleConfig.admin(),
  status: Type.Object(
    {
      maxSwarms: Type.Integer({
        default: 256,
        minimum: 1,
        description: 'swarms GET /swarms remembers (the least recently heard of dropped first)',
      }),
      maxPeersPerSwarm: Type.Integer({
        default: 256,
        minimum: 1,
        description: 'peers per swarm GET /swarms lists; more are counted, not listed',
      }),
      retainMs: Type.Integer({
        default: 600_000,
        minimum: 0,
        description: 'how long GET /swarms shows a swarm after its last announce',
      }),
    },
    { default: {} },
  ),
  logLevel: roleConfig.logLevel(),
  tracing: roleConfig.tracing(),
});

export type TrackerConfig = Static<typeof TrackerConfigSchema>;

import type { FastifyPluginAsync, FastifyRequest } from 'fastify';
import type { Static } from '@sinclair/typebox';
import { Type } from '@sinclair/typebox';
import type { Counter } from 'prom-client';
import { orThrow, parseDigest } from '../../../domain';
import { encodeMetainfo } from '../../../p2p/metainfo';
import type { SecurityMode } from '../../shared/security/authenticate';
import { requireService } from '../../shared/security/authenticate';
import type { AnnounceResult } from '../announce';
import type { SwarmStatus } from '../swarmLedger';

export const AnnounceBodySchema = Type.Object({
  infoHash: Type.String({ pattern: '^[0-9a-f]{64}$' }),
  digest: Type.String({ pattern: '^sha256:[0-9a-f]{64}$' }),
  peerId: Type.String({ pattern: '^[0-9a-f]{40,64}$' }),
  address: Type.String({ pattern: '^(\\[[0-9A-Fa-f:.]+\\]|[A-Za-z0-9._-]+):[0-9]{1,5}$' }),
  complete: Type.Boolean({ default: false }),
  have: Type.Integer({ minimum: 0, default: 0 }),
  origin: Type.Boolean({ default: false }),
  zone: Type.Optional(Type.String({ maxLength: 64, pattern: '^[A-Za-z0-9._:/-]*$' })),
  downloaded: Type.Optional(Type.Integer({ minimum: 0 })),
  fromOrigins: Type.Optional(Type.Integer({ minimum: 0 })),
  uploaded: Type.Optional(Type.Integer({ minimum: 0 })),
  left: Type.Optional(Type.Integer({ minimum: 0 })),
  stopped: Type.Optional(Type.Boolean()),
});

export type AnnounceBody = Static<typeof AnnounceBodySchema>;

/**
 * The tracker API: `POST /announce` (JSON, see `AnnounceBodySchema`) answers
 * `{ peers: [{ peerId, address, origin, complete }], interval }` (interval in ms);
 * `GET /metainfo/:digest` answers the blob's metainfo JSON (header `Shoal-Info-Hash`);
 * `GET /swarms[?limit=N]` (read-only) answers `{ at, swarms }`, what the tracker heard of its
 * swarms, most recent first (see `SwarmStatus`).
 */
export const trackerRoutes =
  (deps: {
    announce: (body: AnnounceBody) => Promise<AnnounceResult>;
    metainfo: (
      digest: string,
    ) => Promise<{ metainfo: Parameters<typeof encodeMetainfo>[0]; infoHash: string }>;
    announces: Counter<'result'>;
    /** required: only agents and origins announce, and only an origin as an origin. */
    mode: SecurityMode;
    swarms: (limit: number) => readonly SwarmStatus[];
    now: () => number;
  }): FastifyPluginAsync =>
  async (app) => {
    const servicesOnly = async (request: FastifyRequest) => requireService(request, deps.mode);
    const peersOnly = async (request: FastifyRequest) =>
      requireService(request, deps.mode, ['agent', 'origin']);

    app.post(
      '/announce',
      { onRequest: peersOnly, schema: { body: AnnounceBodySchema } },
      async (request) => {
        // A swarm asks origins only while it has none: a fake origin would keep them away.
        if ((request.body as AnnounceBody).origin) requireService(request, deps.mode, ['origin']);
        const result = await deps.announce(request.body as AnnounceBody);
        deps.announces.inc({ result: result.peers.length === 0 ? 'empty' : 'peers' });
        return { peers: result.peers, interval: result.intervalMs };
      },
    );

    app.get(
      '/swarms',
      {
        // What peers are where: for Shoal's own services (the console), like metainfo.
        onRequest: servicesOnly,
        schema: {
          querystring: Type.Object({
            limit: Type.Integer({ minimum: 1, maximum: 1000, default: 100 }),
          }),
        },
      },
      async (request) => ({
        at: new Date(deps.now()).toISOString(),
        swarms: deps.swarms((request.query as { limit: number }).limit),
      }),
    );

    app.get(
      '/metainfo/:digest',
      {
        onRequest: servicesOnly,
        schema: { params: Type.Object({ digest: Type.String({ maxLength: 200 }) }) },
      },
      async (request, reply) => {
        const digest = orThrow(parseDigest((request.params as { digest: string }).digest));
        const { metainfo, infoHash } = await deps.metainfo(digest);
        reply.header('shoal-info-hash', infoHash);
        return reply.type('application/json').send(encodeMetainfo(metainfo));
      },
    );
  };

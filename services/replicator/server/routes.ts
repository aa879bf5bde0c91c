import type { FastifyPluginAsync, FastifyRequest } from 'fastify';
import { Type } from '@sinclair/typebox';
import { positionHeader, positionHeaders } from '../../shared/http';
import { auditOf } from '../../shared/security/authenticate';
import type { ApiAccess } from '../../shared/security/guards';
import { requireAdmin } from '../../shared/security/guards';
import type { ReplicationApi } from '../client/replicationApi';

const RuleBody = Type.Object(
  {
    name: Type.Optional(Type.String({ minLength: 1, maxLength: 128 })),
    repo: Type.String({ minLength: 1, maxLength: 512, description: 'repository glob' }),
    tag: Type.Optional(Type.String({ minLength: 1, maxLength: 512, description: 'tag glob' })),
    to: Type.String({ minLength: 1, maxLength: 2048, description: 'destination registry URL' }),
    backfill: Type.Optional(Type.Boolean()),
  },
  { additionalProperties: false },
);

type RuleBodyType = {
  name?: string;
  repo: string;
  tag?: string;
  to: string;
  backfill?: boolean;
};

/**
 * The replication API, `/v1/replication/…`: rules (`GET`, `POST`, `DELETE /rules/<id>`) and
 * `GET /status`. Writes answer with `Shoal-Position`; reads honour `Shoal-Min-Position`.
 * Rules are seen and changed by admins and cluster services only, unless `mode` is open.
 */
export const replicationRoutes =
  (replication: ReplicationApi, access: ApiAccess = { mode: 'open' }): FastifyPluginAsync =>
  async (app) => {
    // Rules copy images out of the cluster: only admins (and cluster services) see or change
    // them. Checked before the body is read.
    const adminsOnly = async (request: FastifyRequest) => requireAdmin(request, access);
    const minPosition = (request: Parameters<typeof positionHeader>[0]) => {
      const position = positionHeader(request, positionHeaders.minimum);
      return position === undefined ? {} : { minPosition: position };
    };

    app.get(
      '/v1/replication/rules',
      {
        onRequest: adminsOnly,
        schema: { querystring: Type.Object({ all: Type.Optional(Type.Boolean()) }) },
      },
      async (request) => ({
        rules: await replication.listRules({
          ...minPosition(request),
          all: (request.query as { all?: boolean }).all === true,
        }),
      }),
    );

    app.post(
      '/v1/replication/rules',
      { onRequest: adminsOnly, schema: { body: RuleBody } },
      async (request, reply) => {
        const body = request.body as RuleBodyType;
        const { rule, position } = await replication.addRule(
          {
            ...(body.name !== undefined && { name: body.name }),
            repoPattern: body.repo,
            ...(body.tag !== undefined && { tagPattern: body.tag }),
            destination: body.to,
            ...(body.backfill !== undefined && { backfill: body.backfill }),
          },
          { by: auditOf(request) },
        );
        reply.header(positionHeaders.written, String(position));
        return reply.code(201).send({ rule, position });
      },
    );

    app.delete(
      '/v1/replication/rules/:id',
      {
        onRequest: adminsOnly,
        schema: { params: Type.Object({ id: Type.String({ minLength: 1, maxLength: 128 }) }) },
      },
      async (request, reply) => {
        const result = await replication.removeRule((request.params as { id: string }).id, {
          by: auditOf(request),
        });
        reply.header(positionHeaders.written, String(result.position));
        return result;
      },
    );

    app.get('/v1/replication/status', { onRequest: adminsOnly }, async (request) =>
      replication.status(minPosition(request)),
    );
  };

import type { FastifyPluginAsync } from 'fastify';
import { Type } from '@sinclair/typebox';
import type { GcApi, GcReport } from '../client/gcApi';

const RunBody = Type.Object(
  {
    dryRun: Type.Optional(Type.Boolean()),
    graceMs: Type.Optional(Type.Integer({ minimum: 0 })),
  },
  { additionalProperties: false },
);

/** The GC API: `POST /v1/gc/runs` runs GC now (or dry), `GET /v1/gc/runs/last` the last report. */
export const gcRoutes =
  (gc: GcApi, last: () => GcReport | undefined): FastifyPluginAsync =>
  async (app) => {
    app.post('/v1/gc/runs', { schema: { body: RunBody } }, async (request) =>
      gc.run((request.body ?? {}) as { dryRun?: boolean; graceMs?: number }),
    );
    app.get('/v1/gc/runs/last', async (_request, reply) => {
      const report = last();
      return report === undefined ? reply.code(204).send() : report;
    });
  };

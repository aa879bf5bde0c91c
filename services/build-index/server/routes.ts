import type { FastifyPluginAsync, FastifyRequest } from 'fastify';
import { Type } from '@sinclair/typebox';
import type { AccessAction } from '../../../domain';
import { ShoalError, orThrow, parseDigest } from '../../../domain';
import { parseAsOf } from '../../../projections';
import { positionHeader, positionHeaders } from '../../shared/http';
import { auditOf } from '../../shared/security/authenticate';
import type { ApiAccess } from '../../shared/security/guards';
import { mayOnRepository, requireCaller, requireOnRepository } from '../../shared/security/guards';
import type { TagApi } from '../client/tagApi';
import { parseTagPath } from '../client/tagPath';

const Paging = Type.Object({
  n: Type.Optional(Type.Integer({ minimum: 0 })),
  last: Type.Optional(Type.String({ maxLength: 1024 })),
});

/**
 * The build-index HTTP API, `/v1/…`. Errors are Problem Details (see shared/http). Cluster
 * services may do everything (the proxy writes for users, naming them on-behalf-of); users
 * what the policies allow (tags need push, moving one overwrite, deleting delete, reading
 * pull; the catalog lists what they may pull); nobody else, unless `mode` is open.
 */
export const buildIndexRoutes =
  (tags: TagApi, access: ApiAccess = { mode: 'open' }): FastifyPluginAsync =>
  async (app) => {
    /** Checks the caller against the tag path's repository, before the body is read. */
    const guard =
      (action: AccessAction) =>
      async (request: FastifyRequest): Promise<void> => {
        const target = parseTagPath((request.params as { '*': string })['*']);
        requireOnRepository(
          request,
          access,
          target.kind === 'tags' ? target.repo : target.ref.repo,
          action,
        );
      };
    const readOptions = (request: Parameters<typeof positionHeader>[0]) => {
      const minPosition = positionHeader(request, positionHeaders.minimum);
      return minPosition === undefined ? {} : { minPosition };
    };

    app.put(
      '/v1/repositories/*',
      {
        onRequest: guard('push'),
        schema: {
          body: Type.Object({
            digest: Type.String({ maxLength: 256 }),
            /** false: refuse to move the tag (a service says so for the user it acts for). */
            overwrite: Type.Optional(Type.Boolean()),
            /** false: point the tag without a manifest check (services and open mode only). */
            requireManifest: Type.Optional(Type.Boolean()),
          }),
        },
      },
      async (request, reply) => {
        const target = parseTagPath((request.params as { '*': string })['*']);
        if (target.kind !== 'tag') throw notAllowed(request.method, target.kind);
        const body = request.body as {
          digest: string;
          overwrite?: boolean;
          requireManifest?: boolean;
        };
        const digest = orThrow(parseDigest(body.digest));
        const overwrite =
          body.overwrite !== false &&
          mayOnRepository(request, access, target.ref.repo, 'overwrite');
        const mayForce = access.mode === 'open' || request.subject.kind === 'service';
        const { position, changed } = await tags.put(target.ref, digest, {
          by: auditOf(request),
          overwrite,
          requireManifest: !(body.requireManifest === false && mayForce),
        });
        reply.header(positionHeaders.written, String(position));
        return reply.code(changed ? 201 : 200).send({ ...target.ref, digest, position, changed });
      },
    );

    app.delete('/v1/repositories/*', { onRequest: guard('delete') }, async (request, reply) => {
      const target = parseTagPath((request.params as { '*': string })['*']);
      if (target.kind !== 'tag') throw notAllowed(request.method, target.kind);
      const { position } = await tags.delete(target.ref, { by: auditOf(request) });
      reply.header(positionHeaders.written, String(position));
      return { ...target.ref, position };
    });

    app.get(
      '/v1/repositories/*',
      {
        onRequest: guard('pull'),
        schema: {
          querystring: Type.Intersect([
            Paging,
            Type.Object({ at: Type.Optional(Type.String({ maxLength: 64 })) }),
          ]),
        },
      },
      async (request, reply) => {
        const target = parseTagPath((request.params as { '*': string })['*']);
        const query = request.query as { n?: number; last?: string; at?: string };
        const options = readOptions(request);
        switch (target.kind) {
          case 'tag': {
            const at = query.at === undefined ? undefined : orThrow(parseAsOf(query.at));
            const view = await tags.get(target.ref, { ...options, ...(at && { at }) });
            reply.header(positionHeaders.written, String(view.position));
            return view;
          }
          case 'history':
            return { ...target.ref, history: await tags.history(target.ref, options) };
          case 'tags':
            return {
              name: target.repo,
              ...(await tags.list(target.repo, { ...options, ...paging(query) })),
            };
        }
      },
    );

    app.get('/v1/catalog', { schema: { querystring: Paging } }, async (request) => {
      requireCaller(request, access);
      const { repositories } = await tags.catalog({
        ...readOptions(request),
        ...paging(request.query as { n?: number; last?: string }),
      });
      // Only what the caller may pull (a page may come out shorter than n).
      return {
        repositories: repositories.filter((repo) => mayOnRepository(request, access, repo, 'pull')),
      };
    });
  };

const paging = (query: { n?: number; last?: string }) => ({
  ...(query.n !== undefined && { n: query.n }),
  ...(query.last !== undefined && { last: query.last }),
});

const notAllowed = (method: string, kind: string) =>
  new ShoalError('PARAMETER_INVALID', `${method} is not allowed on a ${kind} path`);

import type { Static, TSchema } from '@sinclair/typebox';
import { Type } from '@sinclair/typebox';
import type { FastifyInstance, FastifyPluginAsync, FastifyRequest } from 'fastify';
import type { ConsoleReads } from '../consoleReads';
import { parseFilter, recentEvents } from '../events';
import type { LiveFeed } from '../liveFeed';
import { swarmsFor } from '../swarms';
import type { ViewerOf } from '../viewer';
import { openSse } from './sse';

const text = (maxLength = 1024) => Type.Optional(Type.String({ maxLength }));
const limit = (max: number, fallback: number) =>
  Type.Integer({ minimum: 1, maximum: max, default: fallback });
/** A position the read must reflect: the console waits for its projections to reach it. */
const min = Type.Optional(Type.Integer({ minimum: 0 }));
const filterQuery = { type: text(), stream: text(), actor: text(256) };

const schemas = {
  repositories: Type.Object({ q: text(256), after: text(), limit: limit(200, 50), min }),
  repository: Type.Object({ name: Type.String({ maxLength: 1024 }), min }),
  tags: Type.Object({
    repo: Type.String({ maxLength: 1024 }),
    after: text(256),
    limit: limit(500, 100),
    min,
  }),
  history: Type.Object({
    repo: Type.String({ maxLength: 1024 }),
    tag: Type.String({ maxLength: 256 }),
    min,
  }),
  asOf: Type.Object({
    repo: Type.String({ maxLength: 1024 }),
    at: Type.String({ maxLength: 64 }),
    min,
  }),
  manifest: Type.Object({
    repo: Type.String({ maxLength: 1024 }),
    digest: Type.String({ maxLength: 200 }),
    min,
  }),
  blobs: Type.Object({
    prefix: text(200),
    after: text(200),
    limit: limit(500, 100),
    only: Type.Optional(Type.Union([Type.Literal('pending'), Type.Literal('under-placed')])),
    min,
  }),
  blob: Type.Object({ digest: Type.String({ maxLength: 200 }) }),
  replication: Type.Object({ min }),
  events: Type.Object({
    ...filterQuery,
    before: Type.Optional(Type.Integer({ minimum: 1 })),
    limit: limit(500, 100),
  }),
  live: Type.Object({ ...filterQuery, swarms: Type.Optional(Type.Boolean()) }),
};

/**
 * The console's HTTP API under `/api/` (JSON; errors as Problem Details), every answer
 * filtered by what the request's viewer may see, and `/api/live`, the server-sent events of
 * the live views. Reads take `min=<position>`: the answer reflects at least that log position.
 */
export const consoleRoutes =
  (deps: {
    reads: ConsoleReads;
    live: LiveFeed;
    viewerOf: ViewerOf;
    /** Waits until the console's projections have applied a position (bounded). */
    waitFor: (position: number) => Promise<void>;
  }): FastifyPluginAsync =>
  async (app: FastifyInstance) => {
    const { reads, viewerOf } = deps;

    /** A GET route with a query schema; the handler gets the viewer and the parsed query. */
    const get = <S extends TSchema>(
      path: string,
      querystring: S,
      handler: (viewer: ReturnType<ViewerOf>, query: Static<S>, request: FastifyRequest) => unknown,
    ) =>
      app.get(path, { schema: { querystring } }, async (request) => {
        const query = request.query as Static<S> & { min?: number };
        if (query.min !== undefined && query.min > 0) await deps.waitFor(query.min);
        return handler(viewerOf(request), query, request);
      });

    get('/api/overview', Type.Object({ min }), (viewer) => reads.overview(viewer));
    get('/api/repositories', schemas.repositories, (viewer, q) =>
      reads.repositories.list(viewer, {
        ...(q.q !== undefined && { query: q.q }),
        ...(q.after !== undefined && { after: q.after }),
        limit: q.limit,
      }),
    );
    get('/api/repository', schemas.repository, (viewer, q) =>
      reads.repositories.summary(viewer, q.name),
    );
    get('/api/tags', schemas.tags, (viewer, q) =>
      reads.repositories.tags(viewer, q.repo, {
        ...(q.after !== undefined && { after: q.after }),
        limit: q.limit,
      }),
    );
    get('/api/history', schemas.history, (viewer, q) =>
      reads.repositories.history(viewer, q.repo, q.tag),
    );
    get('/api/as-of', schemas.asOf, (viewer, q) => reads.repositories.asOf(viewer, q.repo, q.at));
    get('/api/manifest', schemas.manifest, (viewer, q) =>
      reads.manifests.manifest(viewer, q.repo, q.digest),
    );
    get('/api/replication', schemas.replication, (viewer, q) =>
      reads.replication.status(viewer, q.min),
    );
    get('/api/ring', Type.Object({ min }), (viewer) => reads.placement.ring(viewer));
    get('/api/blobs', schemas.blobs, (viewer, q) =>
      reads.placement.blobs(viewer, {
        ...(q.prefix !== undefined && { prefix: q.prefix }),
        ...(q.after !== undefined && { after: q.after }),
        ...(q.only !== undefined && { only: q.only }),
        limit: q.limit,
      }),
    );
    get('/api/blob', schemas.blob, (viewer, q) => reads.placement.blob(viewer, q.digest));
    get('/api/swarms', Type.Object({ min }), async (viewer) => ({
      configured: reads.swarms.configured,
      ...swarmsFor(await reads.swarms.snapshot(), viewer),
    }));
    get('/api/events', schemas.events, (viewer, q) =>
      recentEvents(reads.log, viewer, parseFilter(q), {
        ...(q.before !== undefined && { before: q.before }),
        limit: q.limit,
      }),
    );

    app.get('/api/live', { schema: { querystring: schemas.live } }, async (request, reply) => {
      const query = request.query as Static<typeof schemas.live>;
      const filter = parseFilter(query);
      const viewer = viewerOf(request);
      const header = request.headers['last-event-id'];
      const lastEventId =
        typeof header === 'string' && /^\d{1,15}$/.test(header) ? Number(header) : undefined;
      // Refuse before the stream opens, so a full console answers with a proper error.
      deps.live.admit();
      const stream = openSse(request, reply);
      await deps.live
        .connect({
          viewer,
          filter,
          swarms: query.swarms === true,
          stream,
          ...(lastEventId !== undefined && { lastEventId }),
        })
        .catch((error: unknown) => {
          stream.send('error', { message: (error as Error).message });
          stream.close();
        });
    });
  };

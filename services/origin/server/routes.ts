import type { Readable } from 'node:stream';
import type { FastifyPluginAsync, FastifyReply, FastifyRequest } from 'fastify';
import { Type } from '@sinclair/typebox';
import type { ByteRange, Digest, RepoName } from '../../../domain';
import { ShoalError, orThrow, parseDigest, parseRepoName } from '../../../domain';
import { encodeMetainfo, infoHash } from '../../../p2p/metainfo';
import { positionHeaders } from '../../shared/http';
import { auditOf } from '../../shared/security/authenticate';
import type { Activity } from '../activity';
import type { BlobService, ReadOptions } from '../blobService';
import { callerHeader } from '../client/originClient';
import type { RingView } from '../ringView';
import type { BlobRead } from '../store/contentStore';
import type { SessionBinding, UploadSessions } from '../uploadSessions';
import { absoluteRange, parseContentRange, parseRangeHeader } from '../../../kit/http/range';

export type OriginRoutesDeps = {
  readonly uploads: UploadSessions;
  readonly blobs: BlobService;
  readonly ring: RingView;
  /** Blob transfers (bodies in, blobs out) are reported here while they run. */
  readonly activity: Pick<Activity, 'begin'>;
  /** Counts blob bytes served (whole answers), and whether a peer origin asked. */
  readonly onBytesOut: (n: number, caller: 'origin' | 'client') => void;
};

const DigestParams = Type.Object({ digest: Type.String({ maxLength: 200 }) });
const UploadParams = Type.Object({ id: Type.String({ maxLength: 300 }) });
const Local = Type.Object({
  local: Type.Optional(Type.Union([Type.Literal('1'), Type.Literal('0')])),
  /** The repository asking: picks the backend a fill reads from. */
  repo: Type.Optional(Type.String({ maxLength: 255 })),
});
const MediaType = Type.String({ minLength: 1, maxLength: 255 });

const digestOf = (request: FastifyRequest): Digest =>
  orThrow(parseDigest((request.params as { digest: string }).digest));
const repoOf = (value: string | undefined): RepoName | undefined =>
  value === undefined ? undefined : orThrow(parseRepoName(value));
const idOf = (request: FastifyRequest) => (request.params as { id: string }).id;
/**
 * The session a request may touch: the repository it names (`?repo=`) and its actor — the user
 * a cluster service acts for, else the caller itself (see `auditOf`).
 */
const bindingOf = (request: FastifyRequest): SessionBinding => {
  const repo = repoOf((request.query as { repo?: string }).repo);
  return { ...(repo !== undefined && { repo }), owner: auditOf(request).actor };
};
const isLocal = (request: FastifyRequest) => (request.query as { local?: string }).local === '1';
/** `local` and `repo` of a blob read, checked. */
const readOptionsOf = (request: FastifyRequest): ReadOptions => {
  const repo = repoOf((request.query as { repo?: string }).repo);
  return { local: isLocal(request), ...(repo !== undefined && { repo }) };
};

/** The request body as a stream, never buffered (see the raw-body plugin below). */
const bodyOf = (request: FastifyRequest): Readable =>
  (request.body as Readable | undefined) ?? request.raw;

const contentLength = (request: FastifyRequest): number | undefined => {
  const raw = request.headers['content-length'];
  return raw === undefined ? undefined : Number(raw);
};

/** Stops a body at `limit` bytes with RANGE_INVALID (a chunk longer than its Content-Range). */
async function* limited(source: AsyncIterable<Uint8Array>, limit: number) {
  let seen = 0;
  for await (const chunk of source) {
    seen += chunk.length;
    if (seen > limit) {
      throw new ShoalError('RANGE_INVALID', `chunk is longer than its Content-Range (${limit})`);
    }
    yield chunk;
  }
}

/**
 * The origin's internal API, `/internal/…`, for the proxy, trackers and other origins.
 * Bodies stream straight to disk (no buffering, no body limit but the blob size limit);
 * errors are Problem Details with Shoal's error codes.
 */
export const originRoutes =
  (deps: OriginRoutesDeps): FastifyPluginAsync =>
  async (app) => {
    const { uploads, blobs, ring } = deps;

    // --- JSON routes -------------------------------------------------------------------

    app.post(
      '/internal/uploads',
      { schema: { body: Type.Object({ repo: Type.String({ maxLength: 300 }) }) } },
      async (request, reply) => {
        const repo = orThrow(parseRepoName((request.body as { repo: string }).repo));
        const session = await uploads.start(repo, auditOf(request));
        reply.header('location', `/internal/uploads/${session.id}`);
        reply.header('upload-offset', '0');
        return reply.code(201).send(session);
      },
    );

    const BoundQuery = Type.Object({ repo: Type.Optional(Type.String({ maxLength: 300 })) });
    app.get(
      '/internal/uploads/:id',
      { schema: { params: UploadParams, querystring: BoundQuery } },
      async (request, reply) => {
        const status = await uploads.status(idOf(request), bindingOf(request));
        reply.header('upload-offset', String(status.size));
        return status;
      },
    );

    app.delete(
      '/internal/uploads/:id',
      { schema: { params: UploadParams, querystring: BoundQuery } },
      async (request, reply) => {
        await uploads.cancel(idOf(request), bindingOf(request));
        return reply.code(204).send();
      },
    );

    const sendBlob = (reply: FastifyReply, digest: Digest, read: BlobRead, partial: boolean) => {
      reply
        .header('content-type', 'application/octet-stream')
        .header('docker-content-digest', digest)
        .header('etag', `"${digest}"`)
        .header('accept-ranges', 'bytes')
        .header('content-length', String(read.end - read.start + 1));
      if (partial) {
        reply.code(206).header('content-range', `bytes ${read.start}-${read.end}/${read.size}`);
      }
      return reply;
    };

    app.head(
      '/internal/blobs/:digest',
      { schema: { params: DigestParams, querystring: Local } },
      async (request, reply) => {
        const digest = digestOf(request);
        const found = await blobs.stat(digest, readOptionsOf(request));
        if (found === undefined)
          throw new ShoalError('BLOB_UNKNOWN', `blob ${digest} is not known`);
        reply
          .header('content-type', 'application/octet-stream')
          .header('docker-content-digest', digest)
          .header('etag', `"${digest}"`)
          .header('accept-ranges', 'bytes')
          .header('content-length', String(found.size));
        return reply.send();
      },
    );

    /** Marks a request as a blob transfer until its answer is over, sent or cut. */
    const transfer = async (_request: FastifyRequest, reply: FastifyReply) => {
      reply.raw.once('close', deps.activity.begin());
    };
    app.get(
      '/internal/blobs/:digest',
      {
        schema: { params: DigestParams, querystring: Local },
        exposeHeadRoute: false,
        onRequest: transfer,
      },
      async (request, reply) => {
        const digest = digestOf(request);
        const options = readOptionsOf(request);
        const spec = parseRangeHeader(request.headers.range);
        let range: ByteRange | undefined;
        if (spec !== undefined && 'suffix' in spec) {
          const found = await blobs.stat(digest, options);
          if (found === undefined) {
            throw new ShoalError('BLOB_UNKNOWN', `blob ${digest} is not known`);
          }
          range = absoluteRange(spec, found.size);
        } else {
          range = spec;
        }
        let read: BlobRead;
        try {
          read = await blobs.read(digest, range, options);
        } catch (error) {
          if ((error as ShoalError).code === 'RANGE_INVALID') {
            const size = (error as ShoalError).detail?.size;
            if (typeof size === 'number') reply.header('content-range', `bytes */${size}`);
          }
          throw error;
        }
        sendBlob(reply, digest, read, range !== undefined);
        // Counted once the answer's last byte is read: no per-chunk stage in the way.
        const caller = request.headers[callerHeader] === 'origin' ? 'origin' : 'client';
        read.stream.once('end', () => deps.onBytesOut(read.end - read.start + 1, caller));
        return reply.send(read.stream);
      },
    );

    app.delete('/internal/blobs/:digest', { schema: { params: DigestParams } }, async (request) =>
      blobs.remove(digestOf(request)),
    );

    app.get(
      '/internal/blobs/:digest/metainfo',
      { schema: { params: DigestParams, querystring: Local } },
      async (request, reply) => {
        const metainfo = await blobs.metainfo(digestOf(request), { local: isLocal(request) });
        reply.header('shoal-info-hash', infoHash(metainfo));
        return reply.type('application/json').send(encodeMetainfo(metainfo));
      },
    );

    const pullThroughRepo = Type.String({ maxLength: 300 });
    const pullThroughReference = Type.String({ minLength: 1, maxLength: 200 });
    app.post(
      '/internal/pull-through/manifests',
      {
        schema: {
          querystring: Type.Object({ repo: pullThroughRepo, reference: pullThroughReference }),
        },
      },
      async (request, reply) => {
        const query = request.query as { repo: string; reference: string };
        const repo = orThrow(parseRepoName(query.repo));
        const pulled = await blobs.pullManifest(repo, query.reference);
        reply
          .header(positionHeaders.written, String(pulled.position))
          .header(
            'content-type',
            pulled.mediaType === '' ? 'application/octet-stream' : pulled.mediaType,
          )
          .header('docker-content-digest', pulled.digest)
          .header('content-length', String(pulled.bytes.length));
        return reply.code(200).send(pulled.bytes);
      },
    );

    app.get(
      '/internal/pull-through/tags',
      {
        schema: {
          querystring: Type.Object({ repo: pullThroughRepo, tag: pullThroughReference }),
        },
      },
      async (request) => {
        const query = request.query as { repo: string; tag: string };
        const digest = await blobs.upstreamDigest(orThrow(parseRepoName(query.repo)), query.tag);
        return digest === undefined ? {} : { digest };
      },
    );

    app.get(
      '/internal/ring',
      {
        schema: {
          querystring: Type.Object({ digest: Type.Optional(Type.String({ maxLength: 200 })) }),
        },
      },
      async (request) => {
        const digestText = (request.query as { digest?: string }).digest;
        const members = await ring.members();
        const owners =
          digestText === undefined
            ? undefined
            : (await ring.owners(orThrow(parseDigest(digestText)))).map((m) => m.id);
        return {
          self: ring.selfId,
          replicas: ring.replicas,
          members,
          ...(owners !== undefined && { owners }),
        };
      },
    );

    // --- Streaming bodies ----------------------------------------------------------------

    await app.register(async (raw) => {
      // Every body reaches the handler as the request stream itself: nothing is buffered.
      raw.removeAllContentTypeParsers();
      raw.addContentTypeParser('*', (_request, payload, done) => done(null, payload));
      raw.addHook('onRequest', transfer);
      // Answering before the body was read (an error): close the connection rather than
      // have Node read and discard what may be gigabytes.
      raw.addHook('onSend', async (request, reply, payload) => {
        if (!request.raw.complete) reply.header('connection', 'close');
        return payload;
      });

      raw.patch(
        '/internal/uploads/:id',
        {
          schema: {
            params: UploadParams,
            querystring: Type.Object({
              offset: Type.Optional(Type.Integer({ minimum: 0 })),
              repo: Type.Optional(Type.String({ maxLength: 300 })),
            }),
          },
        },
        async (request, reply) => {
          const id = idOf(request);
          const { offset: queryOffset } = request.query as { offset?: number };
          const claimed = parseContentRange(request.headers['content-range'] as string | undefined);
          const headerOffset = request.headers['upload-offset'];
          const offsets = [
            queryOffset,
            claimed?.start,
            headerOffset === undefined ? undefined : Number(headerOffset),
          ].filter((o): o is number => o !== undefined);
          if (offsets.some((o) => !Number.isSafeInteger(o) || o !== offsets[0])) {
            throw new ShoalError(
              'RANGE_INVALID',
              'offset, Content-Range and Upload-Offset disagree',
            );
          }
          let body: AsyncIterable<Uint8Array> = bodyOf(request);
          if (claimed !== undefined) {
            const length = claimed.end - claimed.start + 1;
            const declared = contentLength(request);
            if (declared !== undefined && declared !== length) {
              throw new ShoalError(
                'RANGE_INVALID',
                `Content-Range covers ${length} bytes but Content-Length is ${declared}`,
              );
            }
            body = limited(body, length);
          }
          const declared = contentLength(request);
          const status = await uploads.append(id, body, {
            ...(offsets[0] !== undefined && { offset: offsets[0] }),
            ...(declared !== undefined && { length: declared }),
            binding: bindingOf(request),
          });
          reply
            .header('location', `/internal/uploads/${id}`)
            .header('upload-offset', String(status.size))
            .header('range', `0-${Math.max(0, status.size - 1)}`);
          return reply.code(202).send(status);
        },
      );

      raw.put(
        '/internal/uploads/:id',
        {
          schema: {
            params: UploadParams,
            querystring: Type.Object({
              digest: Type.String({ maxLength: 200 }),
              repo: Type.Optional(Type.String({ maxLength: 300 })),
              mediaType: Type.Optional(MediaType),
            }),
          },
        },
        async (request, reply) => {
          const query = request.query as { digest: string; repo?: string; mediaType?: string };
          const digest = orThrow(parseDigest(query.digest));
          const repo = repoOf(query.repo);
          const hasBody = (contentLength(request) ?? 0) > 0 || request.headers['transfer-encoding'];
          const done = await uploads.commit(idOf(request), {
            digest,
            ...(repo !== undefined && { repo }),
            ...(query.mediaType !== undefined && { mediaType: query.mediaType }),
            ...(hasBody && { body: bodyOf(request) }),
            ...(hasBody &&
              contentLength(request) !== undefined && {
                length: contentLength(request) as number,
              }),
            by: auditOf(request),
          });
          reply
            .header(positionHeaders.written, String(done.position))
            .header('docker-content-digest', done.digest)
            .header('location', `/internal/blobs/${done.digest}`);
          return reply.code(201).send(done);
        },
      );

      raw.put(
        '/internal/blobs/:digest',
        {
          schema: {
            params: DigestParams,
            querystring: Type.Object({
              repo: Type.Optional(Type.String({ maxLength: 300 })),
              mediaType: Type.Optional(MediaType),
              replicaOf: Type.Optional(Type.String({ minLength: 1, maxLength: 255 })),
            }),
          },
        },
        async (request, reply) => {
          const digest = digestOf(request);
          const query = request.query as { repo?: string; mediaType?: string; replicaOf?: string };
          const repo = repoOf(query.repo);
          const size = contentLength(request);
          const done = await blobs.put(digest, bodyOf(request), {
            ...(repo !== undefined && { repo }),
            ...(query.mediaType !== undefined && { mediaType: query.mediaType }),
            ...(size !== undefined && { size }),
            ...(query.replicaOf !== undefined && { replicaOf: query.replicaOf }),
            by: auditOf(request),
          });
          if (done.position !== undefined) {
            reply.header(positionHeaders.written, String(done.position));
          }
          reply
            .header('docker-content-digest', digest)
            .header('location', `/internal/blobs/${digest}`);
          return reply.code(201).send(done);
        },
      );
    });
  };

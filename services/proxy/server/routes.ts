import { Readable } from 'node:stream';
import type { FastifyPluginAsync, FastifyReply, FastifyRequest } from 'fastify';
import type { Registry } from 'prom-client';
import type { AccessAction, Digest, Position, RepoName } from '../../../domain';
import { ShoalError, isShoalError, mediaTypes, parseDigest, parseRepoName } from '../../../domain';
import { parseContentRange, parseRangeWithin } from '../../../kit/http/range';
import { positionHeader, positionHeaders } from '../../shared/http';
import type { UploadBinding } from '../../origin/client/blobAccess';
import type { Distribution } from '../distribution';
import { countRegistryBytes } from '../metrics';
import { methodNotAllowed, ociErrorHandler, withStatus } from '../../shared/oci/ociErrorHandler';
import type { V2Path } from '../../shared/oci/parseV2Path';
import { digestParam, parsePageSize, parseV2Path, v2Paths } from '../../shared/oci/parseV2Path';
import { auditOf } from '../../shared/security/authenticate';
import type { UserAuth } from '../../shared/security/userAuth';
import { checkV2Access } from './access';

export type DistributionRouteOptions = {
  readonly manifestMaxBytes: number;
  /** Who may do what (none: everyone may do everything, as in `open` mode). */
  readonly auth?: UserAuth;
  /** Waits until the proxy's projections reflect a position (for `Shoal-Min-Position`). */
  readonly waitFor: (position: Position) => Promise<void>;
  /** Where the bytes pushed and pulled are counted. */
  readonly metrics?: Registry;
};

type Query = Record<string, string | undefined>;

const h = {
  apiVersion: 'Docker-Distribution-API-Version',
  digest: 'Docker-Content-Digest',
  uploadUuid: 'Docker-Upload-UUID',
  subject: 'OCI-Subject',
  filters: 'OCI-Filters-Applied',
} as const;

/** Whether the request carries a body (fastify hands it over as the raw stream). */
const bodyOf = (request: FastifyRequest): Readable | undefined => {
  const length = request.headers['content-length'];
  const chunked = request.headers['transfer-encoding'] !== undefined;
  if (!chunked && (length === undefined || length === '0')) return undefined;
  return request.body instanceof Readable ? request.body : undefined;
};

/**
 * The body's declared length, passed on to the origin so the hop needs no chunked framing
 * and the origin can check it; undefined for a chunked body.
 */
const lengthOf = (request: FastifyRequest): number | undefined => {
  if (request.headers['transfer-encoding'] !== undefined) return undefined;
  const length = Number(request.headers['content-length']);
  return Number.isSafeInteger(length) && length > 0 ? length : undefined;
};

/** `Range: 0-<last byte>` as upload responses report progress ("0-0" when empty). */
const uploadRange = (size: number) => `0-${Math.max(size - 1, 0)}`;

/**
 * A blob `Range: bytes=…` request against the blob's size; one that starts past the end is
 * refused with 416 and a `Content-Range` naming the size, as RFC 9110 asks.
 */
const byteRange = (value: string | undefined, size: number) => {
  try {
    return parseRangeWithin(value, size);
  } catch (error) {
    throw withStatus(error as Error, {
      status: 416,
      headers: { 'Content-Range': `bytes */${size}` },
    });
  }
};

const tooLarge = (size: number | string, limit: number) =>
  withStatus(
    new ShoalError('SIZE_INVALID', `manifest is ${size} bytes; the limit is ${limit} bytes`, {
      detail: { limit },
    }),
    { status: 413 },
  );

/** Reads a manifest body, at most `limit` bytes; the rest of a larger body is discarded. */
const readManifestBody = async (request: FastifyRequest, limit: number): Promise<Buffer> => {
  const declared = Number(request.headers['content-length'] ?? '0');
  const body = bodyOf(request);
  if (declared > limit) {
    body?.resume();
    throw tooLarge(declared, limit);
  }
  if (body === undefined) return Buffer.alloc(0);
  const chunks: Buffer[] = [];
  let total = 0;
  for await (const chunk of body) {
    total += (chunk as Buffer).length;
    if (total > limit) {
      body.resume();
      throw tooLarge(`more than ${limit}`, limit);
    }
    chunks.push(chunk as Buffer);
  }
  return Buffer.concat(chunks);
};

const nextLink = (path: string, n: number, last: string) =>
  `<${path}?n=${n}&last=${encodeURIComponent(last)}>; rel="next"`;

/**
 * The OCI Distribution API under `/v2/`, as one encapsulated plugin: its own error handler
 * (OCI JSON errors), and request bodies passed through as raw streams so blob uploads are
 * never buffered (manifests are read here, capped).
 */
export const distributionRoutes =
  (distribution: Distribution, options: DistributionRouteOptions): FastifyPluginAsync =>
  async (app) => {
    app.removeAllContentTypeParsers();
    app.addContentTypeParser('*', (_request, payload, done) => done(null, payload));
    app.setErrorHandler(ociErrorHandler);
    if (options.metrics !== undefined) countRegistryBytes(app, options.metrics);
    app.addHook('onRequest', async (request, reply) => {
      reply.header(h.apiVersion, 'registry/2.0');
      const minPosition = positionHeader(request, positionHeaders.minimum);
      if (minPosition !== undefined && minPosition > 0) await options.waitFor(minPosition);
    });

    const { auth } = options;
    /** Whether the request's subject may take an action (always, without `auth`). */
    const may = (request: FastifyRequest, repo: RepoName, action: AccessAction) =>
      auth === undefined || auth.access.decide(request.subject, repo, action) === 'allow';
    /** The session a request may touch: its repository, for whom it acts. */
    const bindingOf = (request: FastifyRequest, repo: RepoName): UploadBinding => ({
      repo,
      by: auditOf(request),
    });

    const written = (reply: FastifyReply, position: Position) =>
      reply.header(positionHeaders.written, String(position));

    const blobCreated = (reply: FastifyReply, repo: RepoName, digest: Digest, position: Position) =>
      written(reply, position)
        .code(201)
        .header('Location', v2Paths.blob(repo, digest))
        .header(h.digest, digest)
        .header('Content-Length', '0')
        .send();

    const uploadAccepted = (reply: FastifyReply, repo: RepoName, id: string, size: number) =>
      reply
        .header('Location', v2Paths.upload(repo, id))
        .header('Range', uploadRange(size))
        .header(h.uploadUuid, id)
        .header('Content-Length', '0');

    const routes: {
      [K in V2Path['kind']]: Partial<
        Record<
          string,
          (
            p: Extract<V2Path, { kind: K }>,
            q: Query,
            r: FastifyRequest,
            reply: FastifyReply,
          ) => Promise<unknown>
        >
      >;
    } = {
      ping: {
        GET: async (_p, _q, _r, reply) => reply.type('application/json').send('{}'),
      },

      catalog: {
        GET: async (_p, q, request, reply) => {
          const n = parsePageSize(q['n']);
          const page = await distribution.catalog(
            n,
            q['last'],
            auth === undefined ? undefined : (repo) => auth.access.visible(request.subject, repo),
          );
          const last = page.items[page.items.length - 1];
          if (page.more && n !== undefined && last !== undefined) {
            reply.header('Link', nextLink(v2Paths.catalog(), n, last));
          }
          return reply.type('application/json').send({ repositories: page.items });
        },
      },

      tags: {
        GET: async ({ repo }, q, _r, reply) => {
          const n = parsePageSize(q['n']);
          const page = await distribution.listTags(repo, n, q['last']);
          const last = page.items[page.items.length - 1];
          if (page.more && n !== undefined && last !== undefined) {
            reply.header('Link', nextLink(v2Paths.tags(repo), n, last));
          }
          return reply.type('application/json').send({ name: repo, tags: page.items });
        },
      },

      referrers: {
        GET: async ({ repo, digest }, q, _r, reply) => {
          const subject = digestParam(digest);
          const artifactType = q['artifactType'] || undefined;
          const manifests = await distribution.referrers(repo, subject, artifactType);
          if (artifactType !== undefined) reply.header(h.filters, 'artifactType');
          return reply.type(mediaTypes.ociIndex).send(
            // A Buffer, so that fastify adds no charset: clients compare the media type.
            Buffer.from(
              JSON.stringify({ schemaVersion: 2, mediaType: mediaTypes.ociIndex, manifests }),
            ),
          );
        },
      },

      manifest: {
        GET: async ({ repo, reference }, _q, request, reply) => {
          const manifest = await distribution.getManifest(repo, reference);
          reply
            .header('Content-Type', manifest.mediaType)
            .header(h.digest, manifest.digest)
            .header('Content-Length', String(manifest.bytes.length))
            .header('ETag', `"${manifest.digest}"`);
          return request.method === 'HEAD' ? reply.send() : reply.send(manifest.bytes);
        },
        PUT: async ({ repo, reference }, _q, request, reply) => {
          const bytes = await readManifestBody(request, options.manifestMaxBytes);
          const result = await distribution.putManifest(
            repo,
            reference,
            bytes,
            request.headers['content-type'],
            { by: auditOf(request), overwrite: may(request, repo, 'overwrite') },
          );
          if (result.subject !== undefined) reply.header(h.subject, result.subject);
          return written(reply, result.position)
            .code(201)
            .header('Location', v2Paths.manifest(repo, result.digest))
            .header(h.digest, result.digest)
            .header('Content-Length', '0')
            .send();
        },
        DELETE: async ({ repo, reference }, _q, request, reply) => {
          const position = await distribution.deleteManifest(repo, reference, auditOf(request));
          return written(reply, position).code(202).header('Content-Length', '0').send();
        },
      },

      blob: {
        GET: async ({ repo, digest: text }, _q, request, reply) => {
          const digest = digestParam(text);
          const { size } = await distribution.statBlob(repo, digest);
          reply
            .header(h.digest, digest)
            .header('Accept-Ranges', 'bytes')
            .header('ETag', `"${digest}"`)
            .type('application/octet-stream');
          if (request.method === 'HEAD') {
            return reply.header('Content-Length', String(size)).send();
          }
          const range = byteRange(request.headers.range, size);
          const blob = await distribution.getBlob(repo, digest, range);
          if (range !== undefined) {
            reply
              .code(206)
              .header('Content-Range', `bytes ${blob.start}-${blob.end}/${blob.size}`)
              .header('Content-Length', String(blob.end - blob.start + 1));
          } else {
            reply.header('Content-Length', String(blob.size));
          }
          return reply.send(blob.stream);
        },
        DELETE: async ({ repo, digest }, _q, request, reply) => {
          const position = await distribution.deleteBlob(
            repo,
            digestParam(digest),
            auditOf(request),
          );
          return written(reply, position).code(202).header('Content-Length', '0').send();
        },
      },

      uploads: {
        POST: async ({ repo }, q, request, reply) => {
          const mount = q['mount'];
          const from = q['from'];
          if (mount !== undefined && from !== undefined) {
            const digest = parseDigest(mount);
            const source = parseRepoName(from);
            // Mounting needs pull on `from`; without it, an upload starts as if it lacked the blob.
            const position =
              digest.ok && source.ok && may(request, source.value, 'pull')
                ? await distribution.mount(repo, source.value, digest.value, auditOf(request))
                : undefined;
            if (digest.ok && position !== undefined) {
              return written(reply, position)
                .code(201)
                .header('Location', v2Paths.blob(repo, digest.value))
                .header(h.digest, digest.value)
                .header('Content-Length', '0')
                .send();
            }
          }
          const monolithic = q['digest'] === undefined ? undefined : digestParam(q['digest']);
          const binding = bindingOf(request, repo);
          const { id } = await distribution.startUpload(binding);
          if (monolithic === undefined) {
            bodyOf(request)?.resume();
            return uploadAccepted(reply, repo, id, 0).code(202).send();
          }
          try {
            const body = bodyOf(request);
            const result = await distribution.commitUpload(
              binding,
              id,
              monolithic,
              body,
              lengthOf(request),
            );
            return blobCreated(reply, repo, result.digest, result.position);
          } catch (error) {
            await distribution.cancelUpload(binding, id).catch(() => undefined);
            throw error;
          }
        },
      },

      upload: {
        PATCH: async ({ repo, id }, _q, request, reply) => {
          const range = parseContentRange(request.headers['content-range']);
          const body = bodyOf(request) ?? Readable.from([]);
          try {
            const { size } = await distribution.appendUpload(
              bindingOf(request, repo),
              id,
              body,
              range?.start,
              lengthOf(request),
            );
            return uploadAccepted(reply, repo, id, size).code(202).send();
          } catch (error) {
            body.resume();
            if (isShoalError(error, 'RANGE_INVALID')) {
              // Tell the client where the session stands so it can resume from there.
              const status = await distribution
                .uploadStatus(bindingOf(request, repo), id)
                .catch(() => undefined);
              if (status !== undefined) {
                throw withStatus(error, {
                  status: 416,
                  headers: {
                    Location: v2Paths.upload(repo, id),
                    Range: uploadRange(status.size),
                    [h.uploadUuid]: id,
                  },
                });
              }
            }
            throw error;
          }
        },
        PUT: async ({ repo, id }, q, request, reply) => {
          const text = q['digest'];
          if (text === undefined) {
            bodyOf(request)?.resume();
            throw new ShoalError('DIGEST_INVALID', 'PUT to an upload needs ?digest=<digest>');
          }
          const body = bodyOf(request);
          const result = await distribution.commitUpload(
            bindingOf(request, repo),
            id,
            digestParam(text),
            body,
            lengthOf(request),
          );
          return blobCreated(reply, repo, result.digest, result.position);
        },
        GET: async ({ repo, id }, _q, request, reply) => {
          const { size } = await distribution.uploadStatus(bindingOf(request, repo), id);
          return uploadAccepted(reply, repo, id, size).code(204).send();
        },
        DELETE: async ({ repo, id }, _q, request, reply) => {
          await distribution.cancelUpload(bindingOf(request, repo), id);
          return reply.code(204).send();
        },
      },
    };

    const handle = async (request: FastifyRequest, reply: FastifyReply) => {
      const rest = (request.params as { '*'?: string })['*'] ?? '';
      const target = parseV2Path(rest, request.method);
      const method = request.method === 'HEAD' ? 'GET' : request.method;
      const table = routes[target.kind] as Record<
        string,
        (p: V2Path, q: Query, r: FastifyRequest, reply: FastifyReply) => Promise<unknown>
      >;
      const handler = table[method];
      if (handler === undefined) {
        bodyOf(request)?.resume();
        throw methodNotAllowed(request.method, `a ${target.kind} path`);
      }
      if (auth !== undefined) {
        try {
          checkV2Access(auth, request, target, method);
        } catch (error) {
          // A refused body (a layer, maybe gigabytes) is not read: the connection ends instead.
          if (bodyOf(request) !== undefined) reply.header('Connection', 'close');
          throw error;
        }
      }
      return handler(target, request.query as Query, request, reply);
    };

    const methods = ['GET', 'HEAD', 'PUT', 'POST', 'PATCH', 'DELETE'] as const;
    app.route({ method: [...methods], url: '/v2/*', exposeHeadRoute: false, handler: handle });
    app.route({ method: [...methods], url: '/v2', exposeHeadRoute: false, handler: handle });
  };

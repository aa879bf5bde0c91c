import type { OutgoingHttpHeaders } from 'node:http';
import type { FastifyPluginAsync, FastifyReply, FastifyRequest } from 'fastify';
import type { Digest, RepoName } from '../../../domain';
import { ShoalError, orThrow, parseDigest } from '../../../domain';
import { parseRangeWithin } from '../../../kit/http/range';
import type { BlobFetcher } from '../blobFetcher';
import type { AgentDistribution } from '../distribution';
import { writeFileRange } from './fileResponse';
import { ociErrorHandler } from '../../shared/oci/ociErrorHandler';
import type { V2Path } from '../../shared/oci/parseV2Path';
import { parsePageSize, parseV2Path } from '../../shared/oci/parseV2Path';
import { unauthorized } from '../../shared/security/challenge';
import type { UserAuth } from '../../shared/security/userAuth';

const digestOf = (text: string): Digest => orThrow(parseDigest(text));

const pageOf = (query: Record<string, string | undefined>) => {
  const n = parsePageSize(query['n']);
  return {
    ...(n !== undefined && { n }),
    ...(query['last'] !== undefined && { last: query['last'] }),
  };
};

/**
 * The agent's HTTP surface: a read-only OCI Distribution API under `/v2/` for containerd and
 * docker on this host (pulls by tag and digest, blobs with `Range`, tag lists; every write
 * answers `UNSUPPORTED`; containerd's `?ns=<upstream>` is accepted and ignored), and a generic
 * `GET /blobs/<digest>` for any content-addressed file.
 */
export const agentRoutes =
  (deps: {
    distribution: AgentDistribution;
    blobs: BlobFetcher;
    /**
     * Access required (`auth.required`): the proxy's tokens, their grants checked per
     * repository, and what a repository holds confirmed by the proxy. None: open to every
     * process on the host.
     */
    auth?: UserAuth;
  }): FastifyPluginAsync =>
  async (app) => {
    const { auth } = deps;
    const authorizationOf = (request: FastifyRequest) =>
      typeof request.headers.authorization === 'string' ? request.headers.authorization : undefined;
    /** With access required: refuses what the caller's token does not grant. */
    const check = (request: FastifyRequest, target: V2Path) => {
      if (auth === undefined) return;
      if (target.kind === 'ping' || target.kind === 'catalog') {
        if (request.subject.kind !== 'anonymous' || authorizationOf(request) !== undefined) return;
        const scope = target.kind === 'catalog' ? 'registry:catalog:*' : undefined;
        throw unauthorized('authentication required', auth.challenge(request, scope));
      }
      auth.require(request, target.repo, 'pull');
    };
    app.removeAllContentTypeParsers();
    app.addContentTypeParser('*', (_request, payload, done) => done(null, payload));
    app.setErrorHandler(ociErrorHandler);

    /** Serves a blob, whole or a range, pinned in the cache until the response ends. */
    const sendBlob = async (
      request: FastifyRequest,
      reply: FastifyReply,
      text: string,
      repo?: RepoName,
    ) => {
      const digest = digestOf(text);
      if (auth !== undefined) {
        if (repo === undefined) {
          throw new ShoalError(
            'DENIED',
            'blobs by digest alone are off while access is required: ask /v2/<name>/blobs/<digest>',
          );
        }
        await deps.distribution.checkBlob(repo, digest, authorizationOf(request));
      }
      reply
        .header('Docker-Content-Digest', digest)
        .header('Accept-Ranges', 'bytes')
        .header('ETag', `"${digest}"`)
        .type('application/octet-stream');
      if (request.method === 'HEAD') {
        const size = await deps.blobs.size(digest);
        return reply.header('Content-Length', String(size)).send();
      }
      const blob = await deps.blobs.fetch(digest);
      // Node arms the keep-alive timeout (72 s) once the last byte is in the kernel's socket
      // buffers (megabytes on loopback), and then destroys the socket with that tail unread
      // by a slow reader (a pull that unpacks as it reads): the pull is cut short. A closing
      // connection is ended gracefully instead, after every byte.
      reply.header('Connection', 'close');
      try {
        const range = parseRangeWithin(request.headers.range, blob.size);
        const start = range?.start ?? 0;
        const end = range?.end ?? blob.size - 1;
        if (range !== undefined) {
          reply.code(206).header('Content-Range', `bytes ${start}-${end}/${blob.size}`);
        }
        reply.header('Content-Length', String(Math.max(0, end - start + 1)));
        // The body goes out through pooled buffers (see `writeFileRange`): the reply is
        // hijacked, and the onResponse hooks still run when the response finishes.
        reply.hijack();
        const raw = reply.raw;
        raw.writeHead(reply.statusCode, reply.getHeaders() as OutgoingHttpHeaders);
        raw.once('close', blob.release);
        writeFileRange(raw, blob.path, start, end).catch((error: unknown) =>
          request.log.warn({ err: error, digest }, 'cannot serve a blob'),
        );
        return reply;
      } catch (error) {
        blob.release();
        throw error;
      }
    };

    const handle = async (request: FastifyRequest, reply: FastifyReply) => {
      reply.header('Docker-Distribution-API-Version', 'registry/2.0');
      const rest = (request.params as { '*'?: string })['*'] ?? '';
      if (request.method !== 'GET' && request.method !== 'HEAD') {
        (request.body as NodeJS.ReadableStream | undefined)?.resume?.();
        throw new ShoalError('UNSUPPORTED', 'this registry is read-only (a Shoal agent)');
      }
      const target = parseV2Path(rest, request.method);
      check(request, target);
      const query = request.query as Record<string, string | undefined>;
      switch (target.kind) {
        case 'ping':
          return reply.type('application/json').send('{}');
        case 'catalog': {
          const { repositories } = await deps.distribution.catalog(pageOf(query));
          return reply.send({
            repositories:
              auth === undefined
                ? repositories
                : repositories.filter((repo) => auth.access.visible(request.subject, repo)),
          });
        }
        case 'tags':
          return reply.send({
            name: target.repo,
            tags: (await deps.distribution.tags(target.repo, pageOf(query))).tags,
          });
        case 'manifest': {
          const manifest = await deps.distribution.manifest(
            target.repo,
            target.reference,
            auth && { authorization: authorizationOf(request) },
          );
          reply
            .header('Content-Type', manifest.mediaType)
            .header('Docker-Content-Digest', manifest.digest)
            .header('Content-Length', String(manifest.bytes.length))
            .header('ETag', `"${manifest.digest}"`);
          return request.method === 'HEAD' ? reply.send() : reply.send(manifest.bytes);
        }
        case 'blob':
          return sendBlob(request, reply, target.digest, target.repo);
        case 'uploads':
        case 'upload':
          throw new ShoalError('UNSUPPORTED', 'this registry is read-only (a Shoal agent)');
        case 'referrers':
          // Referrers (signatures, SBOMs) are a query over every manifest of a repository:
          // the proxy answers it; an agent serves content by name and digest only.
          throw new ShoalError(
            'UNSUPPORTED',
            'a Shoal agent does not serve the referrers API: ask the proxy (shoal dev: port P, ' +
              '"proxy" in <data-dir>/endpoints.json), e.g. oras discover <proxy>/' +
              `${target.repo}@${target.digest}`,
          );
      }
    };

    const methods = ['GET', 'HEAD', 'PUT', 'POST', 'PATCH', 'DELETE'] as const;
    app.route({ method: [...methods], url: '/v2/*', exposeHeadRoute: false, handler: handle });
    app.route({ method: [...methods], url: '/v2', exposeHeadRoute: false, handler: handle });
    app.route({
      method: ['GET', 'HEAD'],
      url: '/blobs/:digest',
      exposeHeadRoute: false,
      handler: (request, reply) =>
        sendBlob(request, reply, (request.params as { digest: string }).digest),
    });
  };

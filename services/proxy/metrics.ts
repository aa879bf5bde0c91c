import { Transform } from 'node:stream';
import type { FastifyInstance } from 'fastify';
import { Counter } from 'prom-client';
import type { Registry } from 'prom-client';
import type { RecheckResult } from './tagFreshness';

/**
 * `shoal_proxy_tag_rechecks_total{result}`: rechecks of tags pulled through from an upstream
 * registry, by how they ended (see RecheckResult; `failed` and `timeout` served the last
 * known digest). Returns the counting function the tag freshness is given.
 */
export const countTagRechecks = (registry: Registry): ((result: RecheckResult) => void) => {
  const rechecks = new Counter({
    name: 'shoal_proxy_tag_rechecks_total',
    help: 'Rechecks of pull-through tags upstream, by result',
    labelNames: ['result'] as const,
    registers: [registry],
  });
  for (const result of ['unchanged', 'moved', 'gone', 'failed', 'timeout', 'local'] as const) {
    rechecks.inc({ result }, 0);
  }
  return (result) => rechecks.inc({ result });
};

/** What a `/v2/` path moves: blob bytes (uploads included) or manifests. */
const kindOf = (url: string): 'blob' | 'manifest' | undefined => {
  if (url.includes('/blobs/')) return 'blob';
  if (url.includes('/manifests/')) return 'manifest';
  return undefined;
};

/**
 * Bytes pushed and pulled through the proxy's OCI API, by kind (blob or manifest):
 * `shoal_proxy_pushed_bytes_total` counts request bodies as they stream in (a `preParsing`
 * hook wraps the body in a counting pass-through), `shoal_proxy_pulled_bytes_total` the
 * lengths of `GET` answers with content (200, 206) that were sent to the end. Requests by
 * route and status and their durations are the `shoal_http_*` metrics every service has.
 * Installed on the `/v2/` plugin.
 */
export const countRegistryBytes = (app: FastifyInstance, registry: Registry): void => {
  const pushed = new Counter({
    name: 'shoal_proxy_pushed_bytes_total',
    help: 'Bytes clients pushed through the proxy (upload and manifest bodies), by kind',
    labelNames: ['kind'] as const,
    registers: [registry],
  });
  const pulled = new Counter({
    name: 'shoal_proxy_pulled_bytes_total',
    help: 'Bytes clients pulled through the proxy (blob and manifest GETs), by kind',
    labelNames: ['kind'] as const,
    registers: [registry],
  });
  for (const kind of ['blob', 'manifest'] as const) {
    pushed.inc({ kind }, 0);
    pulled.inc({ kind }, 0);
  }
  app.addHook('preParsing', async (request, _reply, payload) => {
    const kind = kindOf(request.url);
    if (kind === undefined) return payload;
    const counter = new Transform({
      transform(chunk: Buffer, _encoding, done) {
        pushed.inc({ kind }, chunk.length);
        done(null, chunk);
      },
    });
    payload.on('error', (error) => counter.destroy(error));
    return payload.pipe(counter);
  });
  app.addHook('onResponse', async (request, reply) => {
    if (request.method !== 'GET' || (reply.statusCode !== 200 && reply.statusCode !== 206)) return;
    if (request.raw.aborted || !reply.raw.writableFinished) return;
    const kind = kindOf(request.url);
    const length = Number(reply.getHeader('content-length') ?? 0);
    if (kind !== undefined && length > 0) pulled.inc({ kind }, length);
  });
};

import type { Server as HttpServer, ServerOptions as HttpServerOptions } from 'node:http';
import type { Socket } from 'node:net';
import type { TLSSocket } from 'node:tls';
import type { FastifyInstance, FastifyRequest } from 'fastify';
import type { Logger } from './logger';
import type { HttpLimits, TlsConfig } from './security/securityConfig';
import type { ReloadableTls, TlsMaterial } from './security/tlsFiles';

/** A listener's TLS: its files (kept current) and whether it asks clients for certificates. */
export type ServerTls = {
  readonly files: ReloadableTls;
  readonly clientAuth: TlsConfig['clientAuth'];
};

/** How a role's listener is set up: TLS (none: plain HTTP) and limits (none: Node's). */
export type HttpServerSetup = {
  readonly tls?: ServerTls;
  readonly limits?: HttpLimits;
};

/** TLS 1.0 and 1.1 are refused (RFC 8996). */
export const minTlsVersion = 'TLSv1.2';

/** The secure context of a listener: its certificate, and the CA client certificates need. */
const contextOf = (material: TlsMaterial, clientAuth: ServerTls['clientAuth']) => ({
  ...(material.cert !== undefined && { cert: material.cert }),
  ...(material.key !== undefined && { key: material.key }),
  ...(clientAuth !== 'none' && material.ca !== undefined && { ca: material.ca }),
});

/**
 * The options fastify creates its server with: `https` (certificate, minimum TLS 1.2, client
 * certificates asked for or required) or `http`, with the head timeout checked every second
 * (Node checks every 30 s by default, so a slow head would hold a socket that long).
 */
export const serverOptionsOf = (setup: HttpServerSetup) => {
  const limits = setup.limits;
  const http: HttpServerOptions = {
    ...(limits !== undefined && {
      headersTimeout: limits.headersTimeoutMs,
      connectionsCheckingInterval: Math.min(1000, limits.headersTimeoutMs),
    }),
  };
  const fastifyLimits = limits === undefined ? {} : { connectionTimeout: limits.idleTimeoutMs };
  if (setup.tls === undefined) return { http, ...fastifyLimits };
  const { files, clientAuth } = setup.tls;
  const material = files.current();
  const asks = clientAuth !== 'none' && material.ca !== undefined;
  return {
    https: {
      ...http,
      ...contextOf(material, clientAuth),
      minVersion: minTlsVersion,
      requestCert: asks,
      // `request`: a connection without a certificate is let in, and a bad certificate is
      // refused by the authenticator (401), so users and services share the listener.
      rejectUnauthorized: asks && clientAuth === 'require',
    },
    ...fastifyLimits,
  } as const;
};

/**
 * What a created server needs besides its options: the certificate swapped on reload
 * (connections open keep theirs), and the connection caps and the slow-body cut.
 */
export const applyServerSetup = (
  app: FastifyInstance,
  setup: HttpServerSetup,
  logger: Logger,
): void => {
  const server = app.server as HttpServer & {
    setSecureContext?: (options: object) => void;
  };
  const tls = setup.tls;
  if (tls !== undefined) {
    tls.files.onChange((material) =>
      server.setSecureContext?.(contextOf(material, tls.clientAuth)),
    );
  }
  const limits = setup.limits;
  if (limits === undefined) return;
  if (limits.maxConnections > 0) server.maxConnections = limits.maxConnections;
  if (limits.maxConnectionsPerAddress > 0) {
    capPerAddress(server, limits.maxConnectionsPerAddress, logger);
  }
  if (limits.bodyMinBytesPerSecond > 0) {
    app.addHook('onRequest', async (request) => {
      watchBodyRate(request, limits, logger);
    });
  }
};

/** Closes a new connection from an address that already has `cap` open. */
const capPerAddress = (server: HttpServer, cap: number, logger: Logger) => {
  const open = new Map<string, number>();
  let warned = 0;
  server.on('connection', (socket: Socket) => {
    const address = socket.remoteAddress ?? '';
    const count = (open.get(address) ?? 0) + 1;
    if (count > cap) {
      // Logged at most once a second: a flood must not flood the logs too.
      if (Date.now() - warned > 1000) {
        warned = Date.now();
        logger.warn({ address, cap }, 'connection refused: too many from one address');
      }
      socket.destroy();
      return;
    }
    open.set(address, count);
    socket.once('close', () => {
      const left = (open.get(address) ?? 1) - 1;
      if (left <= 0) open.delete(address);
      else open.set(address, left);
    });
  });
};

/**
 * Cuts a request whose body arrives slower than `bodyMinBytesPerSecond` for
 * `bodyTimeoutMs` while the server waits for it. Time the server itself is not reading (the
 * body buffered, or paused by back-pressure from where it is written) does not count: the
 * client is then not the slow one.
 */
const watchBodyRate = (request: FastifyRequest, limits: HttpLimits, logger: Logger) => {
  const raw = request.raw;
  const hasBody =
    raw.headers['transfer-encoding'] !== undefined ||
    Number(raw.headers['content-length'] ?? 0) > 0;
  if (!hasBody || raw.complete) return;
  const socket = raw.socket as Socket | TLSSocket;
  const windowMs = Math.min(limits.bodyTimeoutMs, 1000);
  const floor = (limits.bodyMinBytesPerSecond * windowMs) / 1000;
  let last = socket.bytesRead;
  let starvedMs = 0;
  const timer = setInterval(() => {
    const read = socket.bytesRead;
    const waiting = raw.readableLength === 0 && raw.readableFlowing !== false;
    starvedMs = waiting && read - last < floor ? starvedMs + windowMs : 0;
    last = read;
    if (starvedMs >= limits.bodyTimeoutMs) {
      stop();
      logger.warn(
        { address: socket.remoteAddress, method: raw.method, timeoutMs: limits.bodyTimeoutMs },
        'request body too slow: connection closed',
      );
      socket.destroy();
    }
  }, windowMs);
  timer.unref();
  const stop = () => clearInterval(timer);
  raw.once('end', stop);
  raw.once('close', stop);
};

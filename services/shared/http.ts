import type { AddressInfo } from 'node:net';
import Fastify, { LogController } from 'fastify';
import type { FastifyBaseLogger, FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { Counter, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import type { ErrorCode } from '../../domain';
import { ShoalError, isShoalError } from '../../domain';
import { formatHost } from '../../kit/http/host';
import type { HttpServerSetup } from './httpServer';
import { applyServerSetup, serverOptionsOf } from './httpServer';
import type { Logger } from './logger';
import type { Authenticator } from './security/authenticate';
import { installAuthentication } from './security/authenticate';
import { traceRequests } from './httpTracing';
import type { Tracing } from './tracing';
import { challengeOf } from './security/challenge';

export type HttpApp = {
  readonly app: FastifyInstance;
  readonly metrics: Registry;
  /**
   * Starts listening (and the admin listener, when there is one; `app.close()` closes both).
   * Resolves with the URLs: `https://` when the listener has TLS.
   */
  readonly listen: (address: { host: string; port: number }) => Promise<ListeningUrls>;
};

export type ListeningUrls = { readonly url: string; readonly adminUrl?: string };

/** A listener of its own for `/metrics` and the detailed `/health`. */
export type AdminListener = {
  readonly host: string;
  readonly port: number;
  readonly server?: HttpServerSetup;
};

/**
 * A fastify app with what every Shoal service has: JSON logs through the given pino logger,
 * `/health`, Prometheus `/metrics`, request metrics, and one error handler that turns
 * `ShoalError`s into Problem Details (RFC 9457) and never leaks a 5xx message.
 * OCI routes (`/v2/`) install their own handler for the OCI error format.
 */
/** Streamed answers at least this large close their connection when done (see onSend). */
const streamedCloseBytes = 1024 * 1024;

export const createHttpApp = (options: {
  service: string;
  logger: Logger;
  /** Readiness: `/health` answers 503 with the reason while this returns a string. */
  notReady?: () => string | undefined;
  bodyLimit?: number;
  /**
   * Who a request is from, asked in order before any route runs (`request.subject`;
   * anonymous when none recognises the request). Cluster identities come first, users after.
   */
  authenticators?: readonly Authenticator[];
  /** TLS and limits of the listener (none: plain HTTP with Node's defaults). */
  server?: HttpServerSetup;
  /** Moves `/metrics` and the detailed `/health` to a listener of their own. */
  admin?: AdminListener;
  /** The role's tracing: with it on, a server span per request (see `traceRequests`). */
  tracing?: Tracing;
}): HttpApp => {
  const setup = options.server ?? {};
  const app = Fastify({
    ...serverOptionsOf(setup),
    loggerInstance: options.logger as FastifyBaseLogger,
    // Request logging is off: metrics count requests, errors are logged by the handler.
    logController: new LogController({ disableRequestLogging: true }),
    bodyLimit: options.bodyLimit ?? 1024 * 1024,
    // Repository names contain slashes; routes take them as wildcards.
    routerOptions: { ignoreTrailingSlash: false, maxParamLength: 1024 },
  });
  applyServerSetup(app, setup, options.logger);
  installAuthentication(app, options.authenticators ?? []);
  if (options.tracing?.enabled === true) {
    traceRequests(app, options.tracing.tracer, options.service);
  }
  const metrics = new Registry();
  metrics.setDefaultLabels({ service: options.service });
  // The event-loop lag histogram samples on a timer: prom-client's default 10 ms is 100
  // wake-ups a second in every process (5 ms of CPU per second each, idle; 17 % of a core
  // for a 32-agent bench swarm). At 100 ms the lag quantiles still show a stalled loop.
  collectDefaultMetrics({ register: metrics, eventLoopMonitoringPrecision: 100 });
  const requests = new Counter({
    name: 'shoal_http_requests_total',
    help: 'HTTP requests by route and status code',
    labelNames: ['method', 'route', 'status'] as const,
    registers: [metrics],
  });
  const latency = new Histogram({
    name: 'shoal_http_request_duration_seconds',
    help: 'HTTP request latency by route',
    labelNames: ['method', 'route'] as const,
    buckets: [0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 30],
    registers: [metrics],
  });
  app.addHook('onResponse', async (request, reply) => {
    const route = request.routeOptions.url ?? 'unknown';
    requests.inc({ method: request.method, route, status: String(reply.statusCode) });
    latency.observe({ method: request.method, route }, reply.elapsedTime / 1000);
  });

  // Node arms a connection's keep-alive timeout once a response's last byte is in the
  // kernel's socket buffers (megabytes on loopback) and then destroys the socket, cutting a
  // slow reader's tail (a client that unpacks as it reads). A large streamed body therefore
  // ends its connection, which closes gracefully after every byte; small answers keep theirs.
  app.addHook('onSend', async (_request, reply, payload) => {
    const length = Number(reply.getHeader('content-length') ?? 0);
    const streamed = typeof (payload as { pipe?: unknown } | null)?.pipe === 'function';
    if (streamed && length >= streamedCloseBytes) reply.header('connection', 'close');
    return payload;
  });

  app.setErrorHandler(problemDetailsHandler);
  app.setNotFoundHandler((request, reply) =>
    reply
      .code(404)
      .type('application/problem+json')
      .send({
        type: 'about:blank',
        title: 'Not Found',
        status: 404,
        detail: `no route ${request.method} ${request.url}`,
      }),
  );
  const health = (detailed: boolean) => async (_request: FastifyRequest, reply: FastifyReply) => {
    const reason = options.notReady?.();
    if (reason !== undefined) {
      return reply.code(503).send({ status: 'unavailable', ...(detailed && { reason }) });
    }
    return { status: 'ok', ...(detailed && { service: options.service }) };
  };
  const metricsRoute = async (_request: FastifyRequest, reply: FastifyReply) =>
    reply.type(metrics.contentType).send(await metrics.metrics());
  const admin = options.admin;
  let adminApp: FastifyInstance | undefined;
  if (admin === undefined) {
    app.get('/health', health(true));
    app.get('/metrics', metricsRoute);
  } else {
    app.get('/health', health(false));
    const adminSetup = admin.server ?? {};
    adminApp = Fastify({
      ...serverOptionsOf(adminSetup),
      loggerInstance: options.logger as FastifyBaseLogger,
      logController: new LogController({ disableRequestLogging: true }),
    });
    applyServerSetup(adminApp, adminSetup, options.logger);
    adminApp.get('/health', health(true));
    adminApp.get('/metrics', metricsRoute);
    const closing = adminApp;
    app.addHook('onClose', async () => {
      await closing.close();
    });
  }
  const urlOf = (server: FastifyInstance, tls: boolean) => {
    const address = server.server.address() as AddressInfo;
    return `${tls ? 'https' : 'http'}://${formatHost(address.address)}:${address.port}`;
  };
  const listen = async (address: { host: string; port: number }): Promise<ListeningUrls> => {
    await app.listen(address);
    const url = urlOf(app, setup.tls !== undefined);
    if (adminApp === undefined || admin === undefined) return { url };
    try {
      await adminApp.listen({ host: admin.host, port: admin.port });
    } catch (error) {
      await app.close();
      throw error;
    }
    return { url, adminUrl: urlOf(adminApp, admin.server?.tls !== undefined) };
  };
  return { app, metrics, listen };
};

/**
 * What a client is told of a server-side failure: a fixed text per code. The message itself
 * stays in the logs: it may name internal addresses, upstream URLs or user names.
 */
const publicMessages: Partial<Record<ErrorCode, string>> = {
  SERVICE_UNAVAILABLE: 'a service this request needs is unavailable; try again later',
  STORAGE_UNAVAILABLE: 'storage is unavailable; try again later',
  STORAGE_FULL: 'not enough free disk space for this upload; try again later',
  LOG_UNAVAILABLE: 'the event log is unavailable; try again later',
  LOG_CLOSED: 'the service is shutting down; try again',
};
/** 5xx codes whose message and detail are safe to show (positions and projection names). */
const shownServerErrors: ReadonlySet<ErrorCode> = new Set(['POSITION_NOT_REACHED']);

/**
 * Converts any error to `{ statusCode, code, message, detail }`. A 5xx never carries its own
 * message or detail to the client (see `publicMessages`), except codes known to be safe.
 */
export const describeError = (
  error: unknown,
): { statusCode: number; code: string; message: string; detail?: unknown; retriable: boolean } => {
  if (isShoalError(error)) {
    const hide = error.statusCode >= 500 && !shownServerErrors.has(error.code);
    return {
      statusCode: error.statusCode,
      code: error.code,
      message: hide ? (publicMessages[error.code] ?? 'internal error') : error.message,
      ...(error.detail !== undefined && !hide && { detail: error.detail }),
      retriable: error.retriable,
    };
  }
  const fastifyError = error as {
    statusCode?: number;
    code?: string;
    message?: string;
    validation?: unknown;
  };
  if (typeof fastifyError.statusCode === 'number' && fastifyError.statusCode < 500) {
    return {
      statusCode: fastifyError.statusCode,
      code: fastifyError.code ?? 'BAD_REQUEST',
      message: fastifyError.message ?? 'bad request',
      retriable: false,
    };
  }
  return { statusCode: 500, code: 'INTERNAL', message: 'internal error', retriable: false };
};

const problemDetailsHandler = (error: unknown, request: FastifyRequest, reply: FastifyReply) => {
  const described = describeError(error);
  if (described.statusCode >= 500) request.log.error({ err: error }, 'request failed');
  if (isShoalError(error) && error.code === 'POSITION_NOT_REACHED')
    reply.header('Retry-After', '1');
  const challenge = challengeOf(error);
  if (challenge !== undefined) reply.header('WWW-Authenticate', challenge);
  return reply
    .code(described.statusCode)
    .type('application/problem+json')
    .send({
      type: `urn:shoal:error:${described.code}`,
      title: described.code,
      status: described.statusCode,
      detail: described.message,
      code: described.code,
      retriable: described.retriable,
      ...(described.detail !== undefined && { extra: described.detail }),
    });
};

/** Parses a non-negative integer header (`Shoal-Min-Position`); absent gives undefined. */
export const positionHeader = (request: FastifyRequest, name: string): number | undefined => {
  const raw = request.headers[name.toLowerCase()];
  if (raw === undefined) return undefined;
  const value = Array.isArray(raw) ? raw[0] : raw;
  if (value === undefined || !/^\d{1,15}$/.test(value)) {
    throw new ShoalError('POSITION_INVALID', `header ${name} must be a non-negative integer`);
  }
  return Number(value);
};

export const positionHeaders = {
  written: 'Shoal-Position',
  minimum: 'Shoal-Min-Position',
} as const;

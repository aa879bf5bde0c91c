import type { Context, Span, Tracer } from '@opentelemetry/api';
import type { FastifyInstance, FastifyRequest } from 'fastify';
import {
  SpanKind,
  SpanStatusCode,
  extractTraceContext,
  failSpan,
  otelContext,
  otelTrace,
  withTracer,
} from './tracing';

type Traced = { span: Span; context: Context; ended: boolean };

const traced = new WeakMap<FastifyRequest, Traced>();

const end = (request: FastifyRequest, outcome: (span: Span) => void) => {
  const entry = traced.get(request);
  if (entry === undefined || entry.ended) return;
  entry.ended = true;
  outcome(entry.span);
  entry.span.end();
};

/**
 * A server span per request, the child of the caller's span when the request carries a W3C
 * `traceparent`: named `METHOD route`, with the status code, failed on 5xx and on aborts.
 * Route handlers run inside the span's context (with the role's tracer in it), so what they
 * do — calls to other services, log appends — nests under it. Installed before any route.
 */
export const traceRequests = (app: FastifyInstance, tracer: Tracer, service: string): void => {
  app.addHook('onRequest', async (request) => {
    const parent = extractTraceContext(request.headers);
    const route = request.routeOptions.url ?? 'unknown';
    const span = tracer.startSpan(
      `${request.method} ${route}`,
      {
        kind: SpanKind.SERVER,
        attributes: {
          'http.request.method': request.method,
          'http.route': route,
          'url.path': request.url.split('?')[0] ?? request.url,
          'shoal.role': service,
        },
      },
      parent,
    );
    traced.set(request, {
      span,
      context: otelTrace.setSpan(withTracer(parent, tracer), span),
      ended: false,
    });
  });
  app.addHook('onRoute', (route) => {
    const handler = route.handler;
    route.handler = function tracedHandler(this: unknown, request, reply) {
      const ctx = traced.get(request)?.context;
      return ctx === undefined
        ? handler.call(this as FastifyInstance, request, reply)
        : otelContext.with(ctx, () => handler.call(this as FastifyInstance, request, reply));
    };
  });
  app.addHook('onError', async (request, _reply, error) => {
    const entry = traced.get(request);
    if (entry !== undefined && !entry.ended) entry.span.recordException(error);
  });
  app.addHook('onResponse', async (request, reply) => {
    end(request, (span) => {
      span.setAttribute('http.response.status_code', reply.statusCode);
      if (reply.statusCode >= 500) span.setStatus({ code: SpanStatusCode.ERROR });
    });
  });
  app.addHook('onRequestAbort', async (request) => {
    end(request, (span) => failSpan(span, new Error('request aborted by the client')));
  });
};

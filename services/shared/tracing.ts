import type { Context, Span, SpanOptions, Tracer } from '@opentelemetry/api';
import {
  ROOT_CONTEXT,
  SpanKind,
  SpanStatusCode,
  context,
  createContextKey,
  propagation,
  trace,
} from '@opentelemetry/api';
import { AsyncLocalStorageContextManager } from '@opentelemetry/context-async-hooks';
import { W3CTraceContextPropagator } from '@opentelemetry/core';
import { OTLPTraceExporter } from '@opentelemetry/exporter-trace-otlp-proto';
import { resourceFromAttributes } from '@opentelemetry/resources';
import type { SpanExporter } from '@opentelemetry/sdk-trace';
import {
  BatchSpanProcessor,
  ParentBasedSampler,
  SimpleSpanProcessor,
  TraceIdRatioBasedSampler,
  TracerProvider,
} from '@opentelemetry/sdk-trace';
import type { Static } from '@sinclair/typebox';
import { Type } from '@sinclair/typebox';

/**
 * `tracing`: OpenTelemetry traces of the role, exported by OTLP over HTTP (protobuf). Off by
 * default. Every role has the block; each process exports under its own service name.
 */
export const TracingConfigSchema = Type.Object(
  {
    enabled: Type.Boolean({ default: false, description: 'export OpenTelemetry traces' }),
    endpoint: Type.String({
      default: 'http://127.0.0.1:4318/v1/traces',
      description: 'OTLP/HTTP traces endpoint (protobuf)',
    }),
    serviceName: Type.String({
      default: '',
      description: 'service.name of the spans (empty: shoal-<role>)',
    }),
    sampleRatio: Type.Number({
      default: 1,
      minimum: 0,
      maximum: 1,
      description: 'share of new traces recorded; a caller’s sampled flag is followed',
    }),
  },
  { default: {} },
);
export type TracingConfig = Static<typeof TracingConfigSchema>;

/** A role's tracing: its tracer (no-op when off) and how to flush what is left at exit. */
export type Tracing = {
  readonly tracer: Tracer;
  readonly enabled: boolean;
  /** Exports the spans still buffered, then stops. */
  shutdown(): Promise<void>;
};

/** Tracing off: no hooks are installed and the tracer (no provider is global) is a no-op. */
export const tracingOff: Tracing = {
  tracer: trace.getTracer('shoal'),
  enabled: false,
  shutdown: async () => undefined,
};

let globalsSet = false;

/**
 * The process-wide parts, set once: an AsyncLocalStorage context manager (so the active span
 * follows the request through awaits) and the W3C `traceparent` propagator.
 */
const setGlobals = () => {
  if (globalsSet) return;
  globalsSet = true;
  context.setGlobalContextManager(new AsyncLocalStorageContextManager().enable());
  propagation.setGlobalPropagator(new W3CTraceContextPropagator());
};

/**
 * Starts a role's tracing. Each role has its own provider (its own `service.name`, so in
 * `shoal dev` the proxy's spans and the origin's are told apart) and none is registered as
 * the global one: the role's tracer travels in the context with its spans
 * ({@link activeTracer}).
 */
export const startTracing = (
  config: TracingConfig,
  role: string,
  /** Where spans go instead of OTLP, exported as each ends (tests read them back). */
  exporter?: SpanExporter,
): Tracing => {
  if (!config.enabled) return tracingOff;
  setGlobals();
  const provider = new TracerProvider({
    resource: resourceFromAttributes({
      'service.name': config.serviceName || `shoal-${role}`,
      'service.namespace': 'shoal',
    }),
    sampler: new ParentBasedSampler({ root: new TraceIdRatioBasedSampler(config.sampleRatio) }),
    spanProcessors: [
      exporter !== undefined
        ? new SimpleSpanProcessor({ exporter })
        : new BatchSpanProcessor({
            exporter: new OTLPTraceExporter({ url: config.endpoint }),
            scheduledDelayMillis: 500,
          }),
    ],
  });
  return {
    tracer: provider.getTracer('shoal'),
    enabled: true,
    shutdown: () => provider.shutdown(),
  };
};

const tracerKey = createContextKey('shoal.tracer');

/** `ctx` that also carries the role's tracer, for the spans started under it. */
export const withTracer = (ctx: Context, tracer: Tracer): Context =>
  ctx.setValue(tracerKey, tracer);

/**
 * The tracer of the role whose work is running (set where its spans start: the HTTP server
 * hook, the role's own loops), or undefined outside any traced work. Library code starts
 * child spans with it, so it needs no tracer handed down.
 */
export const activeTracer = (ctx: Context = context.active()): Tracer | undefined =>
  ctx.getValue(tracerKey) as Tracer | undefined;

/**
 * Runs `fn` in a child span of the active one, when there is an active traced context; else
 * just runs it. The span records an exception and error status when `fn` throws.
 */
export const inSpan = async <T>(
  name: string,
  options: SpanOptions,
  fn: (span: Span | undefined) => Promise<T>,
): Promise<T> => {
  const parent = context.active();
  const tracer = activeTracer(parent);
  if (tracer === undefined) return fn(undefined);
  const span = tracer.startSpan(name, options, parent);
  try {
    return await context.with(trace.setSpan(parent, span), () => fn(span));
  } catch (error) {
    failSpan(span, error);
    throw error;
  } finally {
    span.end();
  }
};

/** Marks a span failed with the error. */
export const failSpan = (span: Span, error: unknown): void => {
  span.recordException(error instanceof Error ? error : String(error));
  span.setStatus({ code: SpanStatusCode.ERROR, message: (error as Error)?.message ?? '' });
};

/** Starts a role's root span for work of its own (a job, a download), not a request's. */
export const startRootSpan = (
  tracer: Tracer,
  name: string,
  attributes: SpanOptions['attributes'] = {},
): { span: Span; context: Context } => {
  const span = tracer.startSpan(name, { kind: SpanKind.INTERNAL, attributes }, ROOT_CONTEXT);
  return { span, context: trace.setSpan(withTracer(ROOT_CONTEXT, tracer), span) };
};

/** Writes `traceparent` (and `tracestate`) of `ctx` into outgoing request headers. */
export const injectTraceHeaders = (ctx: Context, headers: Record<string, string>): void => {
  propagation.inject(ctx, headers);
};

/** The context a request's `traceparent` header names, or the root. */
export const extractTraceContext = (
  headers: Readonly<Record<string, string | string[] | undefined>>,
): Context => propagation.extract(ROOT_CONTEXT, headers);

export type { Span };
export { SpanKind, SpanStatusCode, context as otelContext, trace as otelTrace };

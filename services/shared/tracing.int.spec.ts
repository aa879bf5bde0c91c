import type { AddressInfo } from 'node:net';
import { InMemorySpanExporter } from '@opentelemetry/sdk-trace';
import type { ReadableSpan } from '@opentelemetry/sdk-trace';
import pino from 'pino';
import { Registry } from 'prom-client';
import { Value } from '@sinclair/typebox/value';
import { createMemoryEventLog } from '../../adapters/eventlog/memory/memoryEventLog';
import { tagPushed } from '../../test/fixtures/events';
import { until } from '../../test/fixtures/processes';
import { createHttpApp } from './http';
import { createJsonClient } from './httpClient';
import { observeEventLog } from './logMetrics';
import type { Tracing, TracingConfig } from './tracing';
import { TracingConfigSchema, startTracing } from './tracing';

// Two real HTTP services on loopback, "front" calling "back" through the shared service
// client, with tracing on (spans kept in memory instead of OTLP) or off.
const logger = pino({ level: 'silent' });
const defaults = () => Value.Default(TracingConfigSchema, {}) as TracingConfig;
const config = (enabled: boolean): TracingConfig => ({ ...defaults(), enabled });

const startPair = async (tracing: { front: Tracing; back: Tracing }) => {
  const seen: Array<string | undefined> = [];
  const back = createHttpApp({ service: 'back', logger, tracing: tracing.back });
  const log = observeEventLog(createMemoryEventLog(), new Registry());
  back.app.get('/inner', async (request) => {
    seen.push(request.headers.traceparent as string | undefined);
    const position = await log.append([tagPushed()]);
    return { position };
  });
  await back.app.listen({ host: '127.0.0.1', port: 0 });
  const backUrl = `http://127.0.0.1:${(back.app.server.address() as AddressInfo).port}`;
  const call = createJsonClient(backUrl);
  const front = createHttpApp({ service: 'front', logger, tracing: tracing.front });
  front.app.get('/outer', async () => (await call<{ position: number }>('GET', '/inner')).body);
  await front.app.listen({ host: '127.0.0.1', port: 0 });
  const frontUrl = `http://127.0.0.1:${(front.app.server.address() as AddressInfo).port}`;
  return {
    seen,
    frontUrl,
    close: async () => {
      await front.app.close();
      await back.app.close();
    },
  };
};

describe('tracing across HTTP (W3C traceparent)', () => {
  it('on: server spans, the client span between them, and a log.append span, one trace', async () => {
    const exporter = new InMemorySpanExporter();
    const front = startTracing(config(true), 'front', exporter);
    const back = startTracing(config(true), 'back', exporter);
    const pair = await startPair({ front, back });
    try {
      // The caller's own trace: the front's server span becomes its child.
      const callerTrace = '0af7651916cd43dd8448eb211c80319c';
      const response = await fetch(`${pair.frontUrl}/outer`, {
        headers: { traceparent: `00-${callerTrace}-b7ad6b7169203331-01` },
      });
      expect(response.status).toBe(200);
      // The front's server span ends once its answer is sent (each span is exported as it ends).
      await until(
        () => exporter.getFinishedSpans().some((s) => s.name === 'GET /outer'),
        5000,
        'the front server span',
        10,
      );
      const spans = exporter.getFinishedSpans();
      const byName = (name: string, service: string) =>
        spans.find(
          (s) => s.name === name && s.resource.attributes['service.name'] === `shoal-${service}`,
        ) as ReadableSpan;
      const outer = byName('GET /outer', 'front');
      const client = spans.find((s) => s.name.startsWith('GET 127.0.0.1:')) as ReadableSpan;
      const inner = byName('GET /inner', 'back');
      const append = byName('log.append', 'back');
      for (const span of [outer, client, inner, append]) {
        expect(span).toBeDefined();
        expect(span.spanContext().traceId).toBe(callerTrace);
      }
      expect(outer.parentSpanContext?.spanId).toBe('b7ad6b7169203331');
      expect(client.parentSpanContext?.spanId).toBe(outer.spanContext().spanId);
      expect(inner.parentSpanContext?.spanId).toBe(client.spanContext().spanId);
      expect(append.parentSpanContext?.spanId).toBe(inner.spanContext().spanId);
      expect(append.attributes['shoal.event_types']).toBe('TagPushed');
      expect(inner.attributes['http.response.status_code']).toBe(200);
      // What crossed the wire names the client span as the parent.
      expect(pair.seen[0]).toBe(`00-${callerTrace}-${client.spanContext().spanId}-01`);
    } finally {
      await pair.close();
      await front.shutdown();
      await back.shutdown();
    }
  });

  it('off (the default): no spans and no traceparent sent', async () => {
    expect(defaults().enabled).toBe(false);
    const exporter = new InMemorySpanExporter();
    const pair = await startPair({
      front: startTracing(config(false), 'front', exporter),
      back: startTracing(config(false), 'back', exporter),
    });
    try {
      const response = await fetch(`${pair.frontUrl}/outer`);
      expect(response.status).toBe(200);
      expect(pair.seen).toEqual([undefined]);
      expect(exporter.getFinishedSpans()).toEqual([]);
    } finally {
      await pair.close();
    }
  });
});

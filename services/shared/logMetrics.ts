import { Counter, Gauge, Histogram } from 'prom-client';
import type { Registry } from 'prom-client';
import type { Clock, EventLog, Position } from '../../domain';
import { isShoalError } from '../../domain';
import type { ProjectionRunner } from './projectionRunner';
import { SpanKind, inSpan } from './tracing';

/**
 * The role's view of the log, measured: each append is timed into
 * `shoal_log_append_duration_seconds` (by outcome), its events counted, and — inside traced
 * work — recorded as a `log.append` span with the event types and the position reached.
 * Everything else goes straight to `log`. Each role wraps the log it is given with its own
 * registry, so in `shoal dev` every role reports its own appends.
 */
export const observeEventLog = (log: EventLog, registry: Registry): EventLog => {
  const latency = new Histogram({
    name: 'shoal_log_append_duration_seconds',
    help: 'Time to append a batch to the log and have it acknowledged, by outcome',
    labelNames: ['outcome'] as const,
    buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1, 5],
    registers: [registry],
  });
  const appended = new Counter({
    name: 'shoal_log_appended_events_total',
    help: 'Events this role appended to the log (batches that succeeded)',
    registers: [registry],
  });
  return {
    append: (events, options) =>
      inSpan(
        'log.append',
        {
          kind: SpanKind.CLIENT,
          attributes: {
            'shoal.events': events.length,
            'shoal.event_types': [...new Set(events.map((e) => e.type))].join(','),
          },
        },
        async (span) => {
          const end = latency.startTimer();
          try {
            const position = await log.append(events, options);
            end({ outcome: 'ok' });
            appended.inc(events.length);
            span?.setAttribute('shoal.position', position);
            return position;
          } catch (error) {
            end({ outcome: isShoalError(error) ? error.code.toLowerCase() : 'error' });
            throw error;
          }
        },
      ),
    readBatch: (from, options) => log.readBatch(from, options),
    read: (from) => log.read(from),
    readStream: (stream) => log.readStream(stream),
    subscribe: (from) => log.subscribe(from),
    head: () => log.head(),
    close: () => log.close(),
  };
};

/**
 * Per projection a runner keeps: the committed position, and its lag behind the log's head
 * in positions and in seconds (the age of the oldest event it has not applied; 0 when caught
 * up). Computed at scrape time: one `head()` and, per lagging projection, one one-event read.
 */
export const registerProjectionMetrics = (
  registry: Registry,
  deps: { runner: ProjectionRunner; log: EventLog; clock: Clock },
): void => {
  const { runner, log, clock } = deps;
  let committed: Readonly<Record<string, Position>> = {};
  // positions$ emits the current value on subscribe; the runner lives as long as the registry.
  runner.positions$.subscribe((positions) => (committed = positions));

  type Lag = { position: Position; positions: number; seconds: number };
  let snapshot: { at: number; value: Promise<Map<string, Lag>> } | undefined;
  const lags = (): Promise<Map<string, Lag>> => {
    const now = clock.now();
    if (snapshot !== undefined && now - snapshot.at < 500) return snapshot.value;
    const value = (async () => {
      const head = await log.head();
      const out = new Map<string, Lag>();
      for (const [name, position] of Object.entries(committed)) {
        let seconds = 0;
        if (position < head) {
          const [next] = await log.readBatch(position + 1, { limit: 1 });
          if (next !== undefined) {
            seconds = Math.max(0, (now - Date.parse(next.metadata.at)) / 1000);
          }
        }
        out.set(name, { position, positions: Math.max(0, head - position), seconds });
      }
      return out;
    })();
    value.catch(() => undefined);
    snapshot = { at: now, value };
    return value;
  };
  const gauge = (name: string, help: string, pick: (lag: Lag) => number) =>
    new Gauge({
      name,
      help,
      labelNames: ['projection'] as const,
      registers: [registry],
      async collect() {
        this.reset();
        for (const [projection, lag] of await lags()) this.set({ projection }, pick(lag));
      },
    });
  gauge(
    'shoal_projection_position',
    'Log position up to which the projection is committed',
    (l) => l.position,
  );
  gauge(
    'shoal_projection_lag_positions',
    'Log positions between the head and what the projection has committed',
    (l) => l.positions,
  );
  gauge(
    'shoal_projection_lag_seconds',
    'Age of the oldest event the projection has not applied (0: caught up)',
    (l) => l.seconds,
  );
};

import type { EventLog, Position, RecordedEvent } from '../../domain';
import { ShoalError } from '../../domain';
import type { Viewer } from './viewer';

/** An event as the console shows it. */
export type EventRow = {
  readonly position: Position;
  readonly type: string;
  readonly stream: string;
  readonly at: string;
  readonly actor: string;
  readonly cluster: string;
  readonly data: Readonly<Record<string, unknown>>;
};

/** Which events a reader wants: types (any of), a stream prefix, an actor (exact). */
export type EventFilter = {
  readonly types?: ReadonlySet<string>;
  readonly stream?: string;
  readonly actor?: string;
};

export const toRow = (event: RecordedEvent): EventRow => ({
  position: event.position,
  type: event.type,
  stream: event.stream,
  at: event.metadata.at,
  actor: event.metadata.actor,
  cluster: event.metadata.cluster,
  data: event.data as Readonly<Record<string, unknown>>,
});

/** The repository an event is about, when it is about one. */
export const repoOf = (event: RecordedEvent): string | undefined => {
  const repo = (event.data as { repo?: unknown }).repo;
  return typeof repo === 'string' ? repo : undefined;
};

/** Events of a repository the viewer may pull; the rest only for viewers of the cluster. */
export const visibleTo = (viewer: Viewer, event: RecordedEvent): boolean => {
  if (viewer.seesCluster) return true;
  const repo = repoOf(event);
  return repo !== undefined && viewer.mayPull(repo);
};

export const matches = (filter: EventFilter, event: RecordedEvent): boolean =>
  (filter.types === undefined || filter.types.size === 0 || filter.types.has(event.type)) &&
  (filter.stream === undefined || filter.stream === '' || event.stream.startsWith(filter.stream)) &&
  (filter.actor === undefined || filter.actor === '' || event.metadata.actor === filter.actor);

/** Parses the filter of a query string (`type=A,B&stream=tag/app&actor=proxy`). */
export const parseFilter = (query: { type?: string; stream?: string; actor?: string }) => {
  const types = (query.type ?? '')
    .split(',')
    .map((t) => t.trim())
    .filter((t) => t !== '');
  if (types.some((t) => !/^[A-Za-z]{1,64}$/.test(t))) {
    throw new ShoalError('PARAMETER_INVALID', 'type must be event type names separated by commas');
  }
  return {
    types: new Set(types),
    ...(query.stream !== undefined && { stream: query.stream }),
    ...(query.actor !== undefined && { actor: query.actor }),
  } satisfies EventFilter;
};

/**
 * The newest events before `before` (default: the head) that the viewer may see and the
 * filter matches, newest first, at most `limit`; reads backwards in windows and stops after
 * `scanLimit` events, giving `next` (where to go on) when it stopped early.
 */
export const recentEvents = async (
  log: EventLog,
  viewer: Viewer,
  filter: EventFilter,
  options: { before?: Position; limit: number; scanLimit?: number },
): Promise<{ events: EventRow[]; head: Position; next?: Position }> => {
  const head = await log.head();
  const scanLimit = options.scanLimit ?? 50_000;
  const window = 500;
  let end = Math.min(options.before === undefined ? head + 1 : options.before, head + 1);
  const out: EventRow[] = [];
  let scanned = 0;
  while (end > 1 && out.length < options.limit && scanned < scanLimit) {
    const start = Math.max(1, end - window);
    const batch = (await log.readBatch(start, { limit: window })).filter((e) => e.position < end);
    scanned += end - start;
    for (const event of batch.reverse()) {
      if (out.length >= options.limit) break;
      if (visibleTo(viewer, event) && matches(filter, event)) out.push(toRow(event));
    }
    end = out.length >= options.limit ? (out.at(-1)?.position ?? start) : start;
  }
  return { events: out, head, ...(end > 1 && { next: end }) };
};

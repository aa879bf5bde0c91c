import type { Observable, Subscription } from 'rxjs';
import type { EventLog, Position, RecordedEvent } from '../../domain';
import { ShoalError } from '../../domain';
import type { Logger } from '../shared/logger';
import type { EventFilter } from './events';
import { matches, toRow, visibleTo } from './events';
import type { HealthWatch, ServiceHealth } from './health';
import type { SwarmReads, SwarmSnapshot } from './swarms';
import { swarmsFor } from './swarms';
import type { SseStream } from './server/sse';
import type { Viewer } from './viewer';

/** One live view in a browser. */
type Client = {
  readonly viewer: Viewer;
  readonly filter: EventFilter;
  readonly swarms: boolean;
  readonly stream: SseStream;
  /** Live events held while the client is sent what it missed (`Last-Event-ID`). */
  backlog: RecordedEvent[] | undefined;
};

/**
 * The console's live views, as server-sent events: the log (`log` messages, id = position,
 * sent once the console's projections have applied the event, so a page that reloads a view
 * on it sees the change), the services' health (`health`, on change), the log position the
 * projections reached (`position`) and, for views that ask, the swarms (`swarms`, polled from
 * the trackers while such a view is open). One subscription to the log serves every view;
 * views are capped at `maxClients`, and each sees only what its viewer may see.
 */
export const createLiveFeed = (deps: {
  log: EventLog;
  /** The console's projections: their committed position, and its changes. */
  applied: { position(): Position; positions$: Observable<unknown> };
  health: HealthWatch;
  swarms: SwarmReads;
  logger: Logger;
  maxClients: number;
  replayLimit: number;
  healthIntervalMs: number;
  swarmIntervalMs: number;
}) => {
  const clients = new Set<Client>();
  let delivered: Position | undefined;
  let pending: RecordedEvent[] = [];
  let subscriptions: Subscription[] = [];
  let starting: Promise<void> | undefined;
  let healthTimer: NodeJS.Timeout | undefined;
  let swarmTimer: NodeJS.Timeout | undefined;
  let lastHealth = '';

  const sendEvent = (client: Client, event: RecordedEvent) => {
    if (visibleTo(client.viewer, event) && matches(client.filter, event)) {
      client.stream.send('log', toRow(event), event.position);
    }
  };

  /** Delivers the events the console's projections have applied. */
  const flush = () => {
    const applied = deps.applied.position();
    if (pending.length === 0 || (pending[0] as RecordedEvent).position > applied) return;
    const ready = pending.filter((e) => e.position <= applied);
    pending = pending.filter((e) => e.position > applied);
    for (const client of clients) {
      if (client.backlog !== undefined) client.backlog.push(...ready);
      else for (const event of ready) sendEvent(client, event);
    }
    delivered = (ready.at(-1) as RecordedEvent).position;
    for (const client of clients) client.stream.send('position', { position: delivered });
  };

  const follow = async () => {
    const head = await deps.log.head();
    delivered = head;
    subscriptions = [
      deps.log.subscribe(head + 1).subscribe({
        next: (event) => {
          pending.push(event);
          flush();
        },
        error: (error: unknown) => {
          deps.logger.error({ err: error }, 'console: the log subscription failed');
          subscriptions = [];
          starting = undefined;
          for (const client of clients) client.stream.close();
        },
      }),
      deps.applied.positions$.subscribe(() => flush()),
    ];
  };

  const broadcastHealth = (health: readonly ServiceHealth[]) => {
    const text = JSON.stringify(health.map(({ checkedAt: _, ...rest }) => rest));
    if (text === lastHealth) return;
    lastHealth = text;
    for (const client of clients) client.stream.send('health', { services: health });
  };

  const pollHealth = () => {
    void deps.health.check().then(broadcastHealth, () => undefined);
  };

  const pollSwarms = async () => {
    const watching = [...clients].filter((c) => c.swarms);
    if (watching.length === 0) return;
    let snapshot: SwarmSnapshot;
    try {
      snapshot = await deps.swarms.snapshot();
    } catch (error) {
      deps.logger.warn({ err: error }, 'console: cannot read swarms');
      return;
    }
    for (const client of watching) client.stream.send('swarms', swarmsFor(snapshot, client.viewer));
  };

  const updateTimers = () => {
    const any = clients.size > 0;
    const anySwarms = [...clients].some((c) => c.swarms);
    if (any && healthTimer === undefined) {
      healthTimer = setInterval(pollHealth, deps.healthIntervalMs);
      healthTimer.unref();
    }
    if (!any && healthTimer !== undefined) {
      clearInterval(healthTimer);
      healthTimer = undefined;
    }
    if (anySwarms && swarmTimer === undefined) {
      swarmTimer = setInterval(() => void pollSwarms(), deps.swarmIntervalMs);
      swarmTimer.unref();
    }
    if (!anySwarms && swarmTimer !== undefined) {
      clearInterval(swarmTimer);
      swarmTimer = undefined;
    }
  };

  /** Sends a reconnecting client what it missed, then what arrived meanwhile. */
  const catchUp = async (client: Client, lastId: Position) => {
    const until = delivered ?? lastId;
    if (until - lastId > deps.replayLimit) {
      client.stream.send('reset', { reason: `more than ${deps.replayLimit} events were missed` });
    } else {
      let from = lastId + 1;
      while (from <= until && !client.stream.closed) {
        const batch = (await deps.log.readBatch(from, { limit: 500 })).filter(
          (e) => e.position <= until,
        );
        for (const event of batch) sendEvent(client, event);
        if (batch.length === 0) break;
        from = (batch.at(-1) as RecordedEvent).position + 1;
      }
    }
    const backlog = client.backlog ?? [];
    client.backlog = undefined;
    for (const event of backlog) if (event.position > until) sendEvent(client, event);
  };

  const admit = () => {
    if (clients.size >= deps.maxClients) {
      throw new ShoalError(
        'SERVICE_UNAVAILABLE',
        `the console serves at most ${deps.maxClients} live views`,
      );
    }
  };

  return {
    /** Throws `SERVICE_UNAVAILABLE` when no further live view may open. */
    admit,

    /**
     * Adds a live view. With `lastEventId` (a reconnect) it is first sent the events after
     * it; a view further behind than `replayLimit` is told to `reset` (reload) instead.
     */
    async connect(options: {
      viewer: Viewer;
      filter: EventFilter;
      swarms: boolean;
      stream: SseStream;
      lastEventId?: Position;
    }): Promise<void> {
      admit();
      starting ??= follow();
      await starting;
      const client: Client = {
        viewer: options.viewer,
        filter: options.filter,
        swarms: options.swarms,
        stream: options.stream,
        backlog: options.lastEventId === undefined ? undefined : [],
      };
      clients.add(client);
      options.stream.onClose(() => {
        clients.delete(client);
        updateTimers();
      });
      updateTimers();
      options.stream.send('position', { position: delivered });
      const health = deps.health.last();
      if (health.length > 0) options.stream.send('health', { services: health });
      pollHealth();
      if (options.swarms) void pollSwarms();
      if (options.lastEventId !== undefined) await catchUp(client, options.lastEventId);
    },

    clients: () => clients.size,

    close(): void {
      for (const subscription of subscriptions.splice(0)) subscription.unsubscribe();
      for (const client of [...clients]) client.stream.close();
      clearInterval(healthTimer);
      clearInterval(swarmTimer);
      healthTimer = undefined;
      swarmTimer = undefined;
    },
  };
};

export type LiveFeed = ReturnType<typeof createLiveFeed>;

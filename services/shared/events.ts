import { createHash, randomUUID } from 'node:crypto';
import type { Clock, EventData, EventType, ShoalEvent } from '../../domain';
import { makeEvent } from '../../domain';

/** Who writes: stamped into every event's metadata. */
export type WriterContext = {
  readonly clock: Clock;
  readonly actor: string;
  readonly cluster: string;
  /** The address of the client whose request this writer serves (see `attributedWriter`). */
  readonly client?: string;
};

/** Who a request acts for: the event metadata's `actor` and `client`. */
export type Attribution = { readonly actor: string; readonly client?: string };

/**
 * The writer of a request's events: the process's writer with the request's actor and client,
 * so the audit trail names who asked, not the service that wrote. Without an attribution the
 * process's own writer.
 */
export const attributedWriter = (writer: WriterContext, by?: Attribution): WriterContext =>
  by === undefined
    ? writer
    : {
        clock: writer.clock,
        cluster: writer.cluster,
        actor: by.actor,
        ...(by.client !== undefined && { client: by.client }),
      };

/** Ids an event may be given: its own, and those that tie it to a flow and its cause. */
export type EventIds = {
  /**
   * The event's id; a fresh UUID by default. Fixed by a writer that may append the same
   * event again (a retry after a crash, two writers recording one outcome: see
   * {@link deterministicEventId}): the log keeps an id once, so the repeat is a no-op.
   */
  readonly id?: string;
  readonly correlationId?: string;
  readonly causationId?: string;
};

/**
 * The one way services build an event: `type` and `data`, with `at`, `actor` and `cluster`
 * from the writer stamped into its metadata.
 */
export const newEvent = <T extends EventType>(
  ctx: WriterContext,
  type: T,
  data: EventData<T>,
  ids: EventIds = {},
): ShoalEvent<T> =>
  makeEvent(type, data, {
    id: ids.id ?? randomUUID(),
    metadata: {
      at: new Date(ctx.clock.now()).toISOString(),
      actor: ctx.actor,
      ...(ctx.client !== undefined && { client: ctx.client }),
      cluster: ctx.cluster,
      ...(ids.correlationId !== undefined && { correlationId: ids.correlationId }),
      ...(ids.causationId !== undefined && { causationId: ids.causationId }),
    },
  });

/**
 * A UUID derived from what an event is about, so that two writers (or one, retrying after a
 * crash) recording the same outcome write the same event id, and the log keeps it once
 * (appends of a known id are no-ops). Formatted as a version-8 UUID (RFC 9562, custom)
 * because some logs (EventStoreDB) require UUID event ids.
 */
export const deterministicEventId = (...parts: ReadonlyArray<string | number>): string => {
  const hex = createHash('sha256').update(parts.map(String).join('\u0000')).digest('hex');
  const variant = ((parseInt(hex[16] as string, 16) & 0x3) | 0x8).toString(16);
  return [
    hex.slice(0, 8),
    hex.slice(8, 12),
    `8${hex.slice(13, 16)}`,
    `${variant}${hex.slice(17, 20)}`,
    hex.slice(20, 32),
  ].join('-');
};

import { randomUUID } from 'node:crypto';
import type { Clock, EventData, EventType, ShoalEvent } from '../../domain';
import { makeEvent } from '../../domain';

/** Who writes: stamped into every event's metadata. */
export type WriterContext = {
  readonly clock: Clock;
  readonly actor: string;
  readonly cluster: string;
};

export const newEvent = <T extends EventType>(
  ctx: WriterContext,
  type: T,
  data: EventData<T>,
  ids: { correlationId?: string; causationId?: string } = {},
): ShoalEvent<T> =>
  makeEvent(type, data, {
    id: randomUUID(),
    metadata: {
      at: new Date(ctx.clock.now()).toISOString(),
      actor: ctx.actor,
      cluster: ctx.cluster,
      ...(ids.correlationId !== undefined && { correlationId: ids.correlationId }),
      ...(ids.causationId !== undefined && { causationId: ids.causationId }),
    },
  });

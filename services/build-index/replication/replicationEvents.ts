import { createHash } from 'node:crypto';
import type { Clock, EventData, ShoalEvent } from '../../../domain';
import { makeEvent } from '../../../domain';

/**
 * A UUID derived from what an outcome is about, so that two replicators (or one, retrying
 * after a crash) recording the same outcome write the same event id, and the log keeps it
 * once (appends of a known id are no-ops). Formatted as a version-8 UUID (RFC 9562, custom)
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

export type ReplicationWriter = { readonly clock: Clock; readonly cluster: string };

/** `ReplicationSucceeded`, one per (rule, destination, source position). */
export const succeededEvent = (
  writer: ReplicationWriter,
  data: EventData<'ReplicationSucceeded'>,
  causationId: string,
): ShoalEvent<'ReplicationSucceeded'> =>
  makeEvent('ReplicationSucceeded', data, {
    id: deterministicEventId(
      'ReplicationSucceeded',
      data.ruleId,
      data.destination,
      data.sourcePosition,
    ),
    metadata: {
      at: new Date(writer.clock.now()).toISOString(),
      actor: 'replicator',
      cluster: writer.cluster,
      correlationId: data.ruleId,
      causationId,
    },
  });

/**
 * `ReplicationFailed`. Giving up is an outcome like success: one per (rule, destination,
 * source position). A failed attempt that will be retried is an observation: each attempt is
 * its own event (its `retryAt` is part of the id), so attempts after a restart are recorded
 * too.
 */
export const failedEvent = (
  writer: ReplicationWriter,
  data: EventData<'ReplicationFailed'>,
  causationId: string,
): ShoalEvent<'ReplicationFailed'> =>
  makeEvent('ReplicationFailed', data, {
    id: deterministicEventId(
      'ReplicationFailed',
      data.ruleId,
      data.destination,
      data.sourcePosition,
      ...(data.retryAt === undefined ? ['final'] : [data.attempt, data.retryAt]),
    ),
    metadata: {
      at: new Date(writer.clock.now()).toISOString(),
      actor: 'replicator',
      cluster: writer.cluster,
      correlationId: data.ruleId,
      causationId,
    },
  });

import type { EventData, EventType } from './eventTypes';

/** A position in a cluster's log. Positions start at 1 and strictly increase; 0 means "none". */
export type Position = number;

export type EventMetadata = {
  /** When the writer created the event, ISO 8601 UTC. */
  readonly at: string;
  /**
   * Who caused it: `user:alice`, `robot:ci`, `service:origin/1`, `anonymous`, or a process
   * acting on its own (`cli`, `replicator`).
   */
  readonly actor: string;
  /** The address of the client whose request caused it, when a request did. */
  readonly client?: string;
  /** The cluster whose log first recorded it. */
  readonly cluster: string;
  readonly correlationId?: string;
  readonly causationId?: string;
};

/** An event as written: `id` makes appends idempotent; `stream` names what it is about. */
export type ShoalEvent<T extends EventType = EventType> = {
  [K in T]: {
    readonly id: string;
    readonly type: K;
    readonly version: number;
    readonly stream: string;
    readonly data: EventData<K>;
    readonly metadata: EventMetadata;
  };
}[T];

/** An event as read back: where it sits in the log and in its stream. */
export type RecordedEvent<T extends EventType = EventType> = ShoalEvent<T> & {
  readonly position: Position;
  /** 0-based revision of this event within its stream. */
  readonly streamVersion: number;
};

import type { Position, RecordedEvent } from '../log/event';
import type { EventType } from '../log/eventTypes';

/**
 * A projection's state is a set of JSON documents, each addressed by a partition and an id
 * (build-index: partition = repository, id = tag). Keyed documents let the runner load and
 * store only what a batch of events touches, so a million tags never move as one blob.
 */
export type DocKey = { readonly partition: string; readonly id: string };

/**
 * A pure projection: which events it reads, which documents an event touches, and how one
 * document evolves. No I/O and no clock; everything it needs is in the event.
 */
export interface Projection<D = unknown> {
  readonly name: string;
  /** Bump when `evolve` changes meaning: stored state of an older version is rebuilt. */
  readonly version: number;
  readonly eventTypes: readonly EventType[];
  /** The documents this event changes (often one). */
  keysOf(event: RecordedEvent): readonly DocKey[];
  /** The next state of one document; `undefined` deletes it. */
  evolve(doc: D | undefined, event: RecordedEvent, key: DocKey): D | undefined;
  /**
   * When present, used instead of `evolve`: the next state of every document the event
   * touches at once (`docs[i]` is at `keys[i]`, as `keysOf` listed them), for a document
   * whose change depends on another's (a counter of distinct blobs per namespace). Pure too.
   */
  evolveAll?(
    docs: ReadonlyArray<D | undefined>,
    event: RecordedEvent,
    keys: readonly DocKey[],
  ): ReadonlyArray<D | undefined>;
}

export type DocChange = { readonly key: DocKey; readonly doc: unknown };

export type Page<T> = { readonly items: T[]; readonly next?: string };

/**
 * Where projections keep their documents and checkpoints.
 *
 * Contract: `commit` writes the changes and moves the checkpoint in one transaction, and only
 * when the stored checkpoint still equals `from` (another runner may share the store: the
 * loser sees `false`, reloads and carries on). A crash therefore never applies an event twice
 * nor skips one. Ordered listings sort ids and partitions by code point.
 */
export interface ProjectionStore {
  /** Position of the last event applied; 0 for a new projection. */
  checkpoint(projection: string): Promise<Position>;
  /** Version of `evolve` the stored state was built with; undefined when none was stored. */
  storedVersion(projection: string): Promise<number | undefined>;
  getMany(projection: string, keys: readonly DocKey[]): Promise<Map<string, unknown>>;
  get<D>(projection: string, key: DocKey): Promise<D | undefined>;
  /** Documents of one partition in id order, after `after`, at most `limit`. */
  list<D>(
    projection: string,
    partition: string,
    options?: { after?: string; limit?: number; reverse?: boolean },
  ): Promise<Array<{ id: string; doc: D }>>;
  /** Partition names in order, after `after`, at most `limit`. */
  partitions(projection: string, options?: { after?: string; limit?: number }): Promise<string[]>;
  commit(
    projection: string,
    batch: { from: Position; to: Position; version: number; changes: readonly DocChange[] },
  ): Promise<boolean>;
  /** Drops all documents and the checkpoint of one projection. */
  reset(projection: string): Promise<void>;
  /** A digest over every document of a projection, equal for equal states. */
  digest(projection: string): Promise<string>;
  close(): Promise<void>;
}

/** The string a key is stored and cached under: partition and id cannot contain NUL. */
export const docKeyString = (key: DocKey): string => `${key.partition}\u0000${key.id}`;

import type { Position, RecordedEvent } from '../../../domain';
import { ShoalError } from '../../../domain';

/**
 * How a Shoal batch is framed on a Kafka topic (format 1). Every record of a batch carries
 * `shoal-batch: <batchId>/<seq>/<count>`; the first one also carries `shoal-format: 1` and,
 * for a conditional append, `shoal-expect: <stream version>` (-1 for "no stream"). The value
 * is the event as JSON (`ShoalEvent`), the key is the event id (for people reading the topic).
 */
export const kafkaLogFormat = 1;
export const batchHeader = 'shoal-batch';
export const formatHeader = 'shoal-format';
export const expectHeader = 'shoal-expect';

/** The framing of one record, decoded from its headers. */
export type BatchFrame = {
  readonly batchId: string;
  readonly seq: number;
  readonly count: number;
  /** Only on `seq` 0: the stream version the batch expects, -1 for "no stream". */
  readonly expect?: number;
  /** Only on `seq` 0. */
  readonly format?: number;
};

/** What the log decided for a batch, the same in every process that reads the topic. */
export type BatchOutcome =
  /** At least one new event became visible (duplicates inside the batch stay void). */
  | { readonly kind: 'written' }
  /** Every id was already in the log: the whole batch is void, a no-op. */
  | { readonly kind: 'duplicate' }
  /** The stream had moved: the whole batch is void. `actual` is -1 for "no stream". */
  | { readonly kind: 'conflict'; readonly stream: string; readonly actual: number };

export type Decided = { readonly batchId: string; readonly outcome: BatchOutcome };

type Pending = {
  readonly frame: BatchFrame;
  readonly values: (string | null)[];
};

const corrupt = (offset: number, why: string, cause?: unknown) =>
  new ShoalError('LOG_CORRUPT', `kafka log: record at offset ${offset} ${why}`, {
    cause,
    detail: { offset },
  });

/**
 * The visible log, rebuilt by every reader from the topic's records in offset order.
 *
 * Kafka has no conditional or idempotent append by key, so Shoal decides both from the log
 * itself, deterministically: a batch is judged when its last record is read, against the
 * events that were visible before it.
 * - an event whose id is already visible (or repeats inside the batch) is **void**;
 * - a batch whose ids are all visible is void (`duplicate`);
 * - a conditional batch (`shoal-expect`) whose stream is not at the expected version is void
 *   as a whole (`conflict`);
 * - otherwise its new events are visible at `position = offset + 1`, in order.
 * Records that do not belong to a complete, contiguous batch (impossible for batches Shoal
 * writes: one produce request carries one Kafka record batch, which the broker appends
 * atomically) are void too. Void records leave gaps in positions; readers skip them.
 *
 * Memory: per visible event, its JSON (about 0.3 KB for a TagPushed), the id in a map and its
 * position in its stream's list — about 0.8 KB measured; a void record costs one array slot.
 */
export const createLogIndex = () => {
  /** Per offset: the RecordedEvent JSON, or null for a void record. */
  const entries: (string | null)[] = [];
  const positionById = new Map<string, Position>();
  const streams = new Map<string, Position[]>();
  let pending: Pending | undefined;
  let head: Position = 0;

  const voidPending = () => {
    if (pending === undefined) return;
    for (let i = 0; i < pending.values.length; i++) {
      entries.push(null);
    }
    pending = undefined;
  };

  const versionOf = (stream: string) => (streams.get(stream)?.length ?? 0) - 1;

  const decide = (batch: Pending): Decided => {
    const firstOffset = entries.length;
    const events = batch.values.map((value, i) => {
      const offset = firstOffset + i;
      if (value === null) throw corrupt(offset, 'has no value');
      let event: { id?: unknown; stream?: unknown };
      try {
        event = JSON.parse(value) as typeof event;
      } catch (error) {
        throw corrupt(offset, 'is not JSON', error);
      }
      if (
        typeof event !== 'object' ||
        event === null ||
        typeof event.id !== 'string' ||
        typeof event.stream !== 'string' ||
        !value.trimEnd().endsWith('}')
      ) {
        throw corrupt(offset, 'is not a Shoal event');
      }
      return { id: event.id, stream: event.stream, value: value.trimEnd() };
    });
    const seen = new Set<string>();
    const fresh = events.map((event) => {
      const isFresh = !positionById.has(event.id) && !seen.has(event.id);
      seen.add(event.id);
      return isFresh;
    });
    let outcome: BatchOutcome;
    if (!fresh.includes(true)) {
      outcome = { kind: 'duplicate' };
    } else if (batch.frame.expect !== undefined) {
      const stream = (events[0] as { stream: string }).stream;
      const actual = versionOf(stream);
      outcome =
        actual === batch.frame.expect ? { kind: 'written' } : { kind: 'conflict', stream, actual };
    } else {
      outcome = { kind: 'written' };
    }
    events.forEach((event, i) => {
      if (outcome.kind !== 'written' || !fresh[i]) {
        entries.push(null);
        return;
      }
      const position = entries.length + 1;
      const version = versionOf(event.stream) + 1;
      entries.push(
        `${event.value.slice(0, -1)},"position":${position},"streamVersion":${version}}`,
      );
      positionById.set(event.id, position);
      const positions = streams.get(event.stream);
      if (positions === undefined) streams.set(event.stream, [position]);
      else positions.push(position);
      head = position;
    });
    return { batchId: batch.frame.batchId, outcome };
  };

  const decode = (json: string, position: Position): RecordedEvent => {
    try {
      return JSON.parse(json) as RecordedEvent;
    } catch (error) {
      throw corrupt(position - 1, 'cannot be decoded', error);
    }
  };

  return {
    /** The next offset to ingest: records below it were seen (decided or pending). */
    get scanned(): number {
      return entries.length + (pending?.values.length ?? 0);
    },
    /** Records below this offset are decided; positions up to it may be read. */
    get decided(): number {
      return entries.length;
    },
    /** The last visible position, 0 when none. */
    get head(): Position {
      return head;
    },

    /**
     * Feeds the record at `offset`; offsets must be fed in order, each once (lower ones are
     * ignored, so a consumer that restarts from an earlier offset does no harm). Returns the
     * outcome of the batch this record completes, if any. Throws `LOG_CORRUPT` for a record
     * that is not a Shoal record: the log cannot be interpreted past it.
     */
    ingest(
      offset: number,
      frame: BatchFrame | undefined,
      value: string | null,
    ): Decided | undefined {
      if (offset < entries.length + (pending?.values.length ?? 0)) return undefined;
      if (offset > entries.length + (pending?.values.length ?? 0)) {
        // Offsets without records (transaction markers, compaction): void, and they break
        // any batch that was not complete.
        voidPending();
        while (entries.length < offset) {
          entries.push(null);
        }
      }
      if (frame === undefined) throw corrupt(offset, `has no ${batchHeader} header`);
      if (frame.seq === 0 && frame.format !== undefined && frame.format > kafkaLogFormat) {
        throw new ShoalError(
          'LOG_CORRUPT',
          `kafka log: record at offset ${offset} has format ${frame.format}; this Shoal reads ` +
            `format ${kafkaLogFormat}: upgrade it`,
          { detail: { offset, format: frame.format } },
        );
      }
      if (
        pending !== undefined &&
        (frame.batchId !== pending.frame.batchId || frame.seq !== pending.values.length)
      ) {
        voidPending();
      }
      if (pending === undefined) {
        if (frame.seq !== 0) {
          entries.push(null);
          return undefined;
        }
        pending = { frame, values: [] };
      }
      pending.values.push(value);
      if (pending.values.length < pending.frame.count) return undefined;
      const batch = pending;
      pending = undefined;
      return decide(batch);
    },

    /** The position of a visible event id. */
    positionOf: (id: string): Position | undefined => positionById.get(id),
    /** The stream's last version, -1 when it has no visible event. */
    versionOf,

    /** The visible event at a position, or undefined for a gap (or a position not decided). */
    at(position: Position): RecordedEvent | undefined {
      const json = entries[position - 1];
      return json === null || json === undefined ? undefined : decode(json, position);
    },

    /** Visible events with `from <= position < to`, at most `limit`. */
    slice(from: Position, to: Position, limit: number): RecordedEvent[] {
      const out: RecordedEvent[] = [];
      const end = Math.min(to, entries.length + 1);
      for (let position = Math.max(from, 1); position < end && out.length < limit; position++) {
        const json = entries[position - 1];
        if (json !== null && json !== undefined) out.push(decode(json, position));
      }
      return out;
    },

    /** Every visible event of a stream, in stream order. */
    stream(stream: string): RecordedEvent[] {
      return (streams.get(stream) ?? []).map((position) =>
        decode(entries[position - 1] as string, position),
      );
    },
  };
};

export type LogIndex = ReturnType<typeof createLogIndex>;

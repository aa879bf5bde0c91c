import type { Digest, Position, Projection, RecordedEvent, Result } from '../domain';
import { ShoalError, fail, ok, truncate } from '../domain';

/** One change of one tag. Partition = `repo:tag`, id = the position, zero-padded to sort. */
export type TagChangeDoc = {
  readonly kind: 'pushed' | 'deleted';
  readonly digest?: Digest;
  readonly previous?: Digest;
  readonly position: Position;
  readonly at: string;
  readonly actor: string;
  /** The client address of the request that made the change, when one did. */
  readonly client?: string;
  readonly cluster: string;
};

/** Width of ids so that code-point order is position order (positions < 10^16). */
export const historyIdWidth = 16;
export const historyId = (position: Position): string =>
  String(position).padStart(historyIdWidth, '0');
export const historyPartition = (repo: string, tag: string): string => `${repo}:${tag}`;

/** Every change of every tag, with time, actor and position: the audit trail. */
export const tagHistoryProjection: Projection<TagChangeDoc> = {
  name: 'tag-history',
  version: 1,
  eventTypes: ['TagPushed', 'TagDeleted'],
  keysOf: (event: RecordedEvent) =>
    event.type === 'TagPushed' || event.type === 'TagDeleted'
      ? [
          {
            partition: historyPartition(event.data.repo, event.data.tag),
            id: historyId(event.position),
          },
        ]
      : [],
  evolve: (_doc, event) => {
    if (event.type !== 'TagPushed' && event.type !== 'TagDeleted') return undefined;
    const { at, actor, client, cluster } = event.metadata;
    return {
      kind: event.type === 'TagPushed' ? 'pushed' : 'deleted',
      ...(event.type === 'TagPushed' && { digest: event.data.digest as Digest }),
      ...(event.data.previous !== undefined && { previous: event.data.previous as Digest }),
      position: event.position,
      at,
      actor,
      ...(client !== undefined && { client }),
      cluster,
    };
  },
};

export type AsOf = { readonly position: Position } | { readonly time: number };

/**
 * The change in effect at a position or a time, given a tag's history in position order.
 * By time, the last change whose `at` is not after it (clocks of writers may disagree; the
 * log order decides between changes with out-of-order times: the later position wins).
 */
export const changeAsOf = (
  history: readonly TagChangeDoc[],
  asOf: AsOf,
): TagChangeDoc | undefined => {
  let found: TagChangeDoc | undefined;
  for (const change of history) {
    const inEffect =
      'position' in asOf ? change.position <= asOf.position : Date.parse(change.at) <= asOf.time;
    if (inEffect) found = change;
  }
  return found;
};

const unitMs: Record<string, number> = {
  s: 1000,
  m: 60_000,
  h: 3_600_000,
  d: 86_400_000,
  w: 604_800_000,
};

/** `5m`, `2h ago`, `5 minutes ago`, `1 day ago`, `90s`: a duration back from now, in ms. */
const relative = (input: string): number | undefined => {
  const m =
    /^(\d{1,9})\s*(s|sec|secs|seconds?|m|min|mins|minutes?|h|hr|hrs|hours?|d|days?|w|weeks?)(\s+ago)?$/i.exec(
      input.trim(),
    );
  if (m === null) return undefined;
  const unit = (m[2] as string).toLowerCase();
  return Number(m[1]) * (unitMs[unit[0] as string] as number);
};

/**
 * Parses `--at` / `?at=`: digits are a log position; `5m`, `2h ago`, `5 minutes ago` a time
 * that long before `now` (so relative times need `now`); anything else an ISO 8601 time.
 */
export const parseAsOf = (input: string, now?: number): Result<AsOf> => {
  if (/^\d{1,15}$/.test(input)) return ok({ position: Number(input) });
  const back = relative(input);
  if (back !== undefined && now !== undefined) return ok({ time: now - back });
  const time = Date.parse(input);
  if (Number.isNaN(time) || !/^\d{4}-\d{2}-\d{2}/.test(input)) {
    return fail(
      new ShoalError(
        'TIME_INVALID',
        `"${truncate(input)}" is neither a log position, a time back from now (5m, 2h ago, ` +
          '3 days ago) nor an ISO 8601 time (e.g. 2026-11-28T14:02:00Z)',
      ),
    );
  }
  return ok({ time });
};

import type { RecordedEvent } from '../domain';
import { given, recorded } from '../test/fixtures/projections';
import type { TagChangeDoc } from './tagHistory';
import {
  changeAsOf,
  historyId,
  historyPartition,
  parseAsOf,
  tagHistoryProjection,
} from './tagHistory';

const digest = (n: number) => `sha256:${String(n).repeat(64).slice(0, 64)}`;

/** Given events, a tag's history as the store lists it: ids in code-point order. */
const historyOf = (events: RecordedEvent[], repo: string, tag: string): TagChangeDoc[] =>
  given(tagHistoryProjection)
    .apply(...events)
    .list(historyPartition(repo, tag))
    .map(({ doc }) => doc);

const pushedDeletedPushed = () =>
  recorded(
    ['TagPushed', { repo: 'lib/app', tag: 'v1', digest: digest(1) }, '2026-01-01T10:00:00Z'],
    ['TagPushed', { repo: 'lib/other', tag: 'v1', digest: digest(9) }, '2026-01-01T10:30:00Z'],
    [
      'TagPushed',
      { repo: 'lib/app', tag: 'v1', digest: digest(2), previous: digest(1) },
      '2026-01-01T11:00:00Z',
    ],
    ['TagDeleted', { repo: 'lib/app', tag: 'v1', previous: digest(2) }, '2026-01-01T12:00:00Z'],
  );

describe('tag-history projection', () => {
  it('when a tag is pushed, moved and deleted, records every change in order', () => {
    const history = historyOf(pushedDeletedPushed(), 'lib/app', 'v1');
    expect(history).toEqual([
      {
        kind: 'pushed',
        digest: digest(1),
        position: 1,
        at: '2026-01-01T10:00:00Z',
        actor: 'user-1',
        cluster: 'c',
      },
      {
        kind: 'pushed',
        digest: digest(2),
        previous: digest(1),
        position: 3,
        at: '2026-01-01T11:00:00Z',
        actor: 'user-3',
        cluster: 'c',
      },
      {
        kind: 'deleted',
        previous: digest(2),
        position: 4,
        at: '2026-01-01T12:00:00Z',
        actor: 'user-4',
        cluster: 'c',
      },
    ]);
    expect(historyOf(pushedDeletedPushed(), 'lib/other', 'v1')).toHaveLength(1);
  });

  it('records who made the change: the actor and the client address of the request', () => {
    const [first] = recorded([
      'TagPushed',
      { repo: 'lib/app', tag: 'v1', digest: digest(1) },
      '2026-01-01T10:00:00Z',
    ]);
    const event = {
      ...(first as RecordedEvent),
      metadata: { ...(first as RecordedEvent).metadata, actor: 'user:alice', client: '10.0.0.7' },
    } as RecordedEvent;
    expect(historyOf([event], 'lib/app', 'v1')).toEqual([
      expect.objectContaining({ actor: 'user:alice', client: '10.0.0.7' }),
    ]);
  });

  it('keys each change by its position, padded so that id order is position order', () => {
    const [event] = recorded([
      'TagPushed',
      { repo: 'lib/app', tag: 'v1', digest: digest(1) },
      '2026-01-01T10:00:00Z',
    ]);
    expect(tagHistoryProjection.keysOf({ ...(event as RecordedEvent), position: 42 })).toEqual([
      { partition: 'lib/app:v1', id: '0000000000000042' },
    ]);
    expect(historyId(9) < historyId(10)).toBe(true);
  });

  it('answers "as of" a position: the change in effect then', () => {
    const history = historyOf(pushedDeletedPushed(), 'lib/app', 'v1');
    expect(changeAsOf(history, { position: 0 })).toBeUndefined();
    expect(changeAsOf(history, { position: 1 })?.digest).toBe(digest(1));
    expect(changeAsOf(history, { position: 2 })?.digest).toBe(digest(1));
    expect(changeAsOf(history, { position: 3 })?.digest).toBe(digest(2));
    expect(changeAsOf(history, { position: 99 })?.kind).toBe('deleted');
  });

  it('answers "as of" a time: the last change not after it', () => {
    const history = historyOf(pushedDeletedPushed(), 'lib/app', 'v1');
    const at = (iso: string) => changeAsOf(history, { time: Date.parse(iso) });
    expect(at('2026-01-01T09:59:59Z')).toBeUndefined();
    expect(at('2026-01-01T10:00:00Z')?.digest).toBe(digest(1));
    expect(at('2026-01-01T11:30:00Z')?.digest).toBe(digest(2));
    expect(at('2026-01-02T00:00:00Z')?.kind).toBe('deleted');
  });

  it('by time, lets the log order decide between writers whose clocks disagree', () => {
    const events = recorded(
      ['TagPushed', { repo: 'lib/app', tag: 'v1', digest: digest(1) }, '2026-01-01T10:05:00Z'],
      ['TagPushed', { repo: 'lib/app', tag: 'v1', digest: digest(2) }, '2026-01-01T10:00:00Z'],
    );
    const history = historyOf(events, 'lib/app', 'v1');
    expect(changeAsOf(history, { time: Date.parse('2026-01-01T10:06:00Z') })?.digest).toBe(
      digest(2),
    );
  });

  it('parses --at as a position or an ISO 8601 time', () => {
    expect(parseAsOf('17')).toEqual({ ok: true, value: { position: 17 } });
    expect(parseAsOf('2026-01-01T10:00:00Z')).toEqual({
      ok: true,
      value: { time: Date.parse('2026-01-01T10:00:00Z') },
    });
    expect(parseAsOf('yesterday')).toMatchObject({ ok: false, error: { code: 'TIME_INVALID' } });
  });

  it('parses --at as a time back from now: 5m, 2h ago, 5 minutes ago', () => {
    const now = Date.parse('2026-01-01T10:00:00Z');
    const at = (text: string) => parseAsOf(text, now);
    expect(at('5m')).toEqual({ ok: true, value: { time: now - 5 * 60_000 } });
    expect(at('2h ago')).toEqual({ ok: true, value: { time: now - 2 * 3_600_000 } });
    expect(at('5 minutes ago')).toEqual({ ok: true, value: { time: now - 5 * 60_000 } });
    expect(at('1 day ago')).toEqual({ ok: true, value: { time: now - 86_400_000 } });
    expect(at('90s')).toEqual({ ok: true, value: { time: now - 90_000 } });
    expect(at('3 weeks ago')).toEqual({ ok: true, value: { time: now - 3 * 604_800_000 } });
    // Without a clock a relative time cannot be placed.
    expect(parseAsOf('5m')).toMatchObject({ ok: false, error: { code: 'TIME_INVALID' } });
    expect(at('5 parsecs ago')).toMatchObject({ ok: false, error: { code: 'TIME_INVALID' } });
  });
});

import type { BatchFrame } from './logIndex';
import { createLogIndex } from './logIndex';

// Given the records of a topic, when the index reads them in order, then the visible log.
type Rec = {
  id: string;
  stream?: string;
  batch: string;
  seq?: number;
  count?: number;
  expect?: number;
};

const feed = (records: readonly Rec[]) => {
  const index = createLogIndex();
  const outcomes = records.map((r, offset) => {
    const frame: BatchFrame = {
      batchId: r.batch,
      seq: r.seq ?? 0,
      count: r.count ?? 1,
      ...(r.expect === undefined ? {} : { expect: r.expect }),
    };
    const value = JSON.stringify({ id: r.id, type: 'TagPushed', stream: r.stream ?? `s-${r.id}` });
    return index.ingest(offset, frame, value)?.outcome;
  });
  const visible = index.slice(1, Infinity, 1000).map((e) => [e.id, e.position, e.streamVersion]);
  return { index, outcomes, visible };
};

describe('kafka log index', () => {
  it('given plain records, then each is visible at offset + 1 with stream versions', () => {
    const { visible, index } = feed([
      { id: 'a', stream: 's', batch: 'b1' },
      { id: 'b', stream: 's', batch: 'b2' },
      { id: 'c', stream: 't', batch: 'b3' },
    ]);
    expect(visible).toEqual([
      ['a', 1, 0],
      ['b', 2, 1],
      ['c', 3, 0],
    ]);
    expect(index.head).toBe(3);
    expect(index.versionOf('s')).toBe(1);
    expect(index.versionOf('nope')).toBe(-1);
  });

  it('given a repeated id, then the later record is void and its batch a duplicate', () => {
    const { visible, outcomes } = feed([
      { id: 'a', batch: 'b1' },
      { id: 'a', batch: 'b2' },
      { id: 'b', batch: 'b3' },
    ]);
    expect(visible).toEqual([
      ['a', 1, 0],
      ['b', 3, 0],
    ]);
    expect(outcomes.map((o) => o?.kind)).toEqual(['written', 'duplicate', 'written']);
  });

  it('given a mixed batch, then only its new ids are visible, once each', () => {
    const { visible, outcomes } = feed([
      { id: 'a', batch: 'b1' },
      { id: 'a', batch: 'b2', seq: 0, count: 4 },
      { id: 'x', batch: 'b2', seq: 1, count: 4 },
      { id: 'x', batch: 'b2', seq: 2, count: 4 },
      { id: 'y', batch: 'b2', seq: 3, count: 4 },
    ]);
    expect(visible).toEqual([
      ['a', 1, 0],
      ['x', 3, 0],
      ['y', 5, 0],
    ]);
    expect(outcomes).toEqual([
      { kind: 'written' },
      undefined,
      undefined,
      undefined,
      { kind: 'written' },
    ]);
  });

  it('given a condition the stream no longer meets, then the whole batch is void', () => {
    const { visible, outcomes } = feed([
      { id: 'a', stream: 's', batch: 'b1', expect: -1 },
      { id: 'b', stream: 's', batch: 'b2', expect: -1 },
      { id: 'c', stream: 's', batch: 'b3', seq: 0, count: 2, expect: 0 },
      { id: 'd', stream: 's', batch: 'b3', seq: 1, count: 2 },
      { id: 'e', stream: 's', batch: 'b4', expect: 0 },
    ]);
    expect(visible).toEqual([
      ['a', 1, 0],
      ['c', 3, 1],
      ['d', 4, 2],
    ]);
    expect(outcomes[1]).toEqual({ kind: 'conflict', stream: 's', actual: 0 });
    expect(outcomes[4]).toEqual({ kind: 'conflict', stream: 's', actual: 2 });
  });

  it('given known ids under a stale condition, then a duplicate, not a conflict', () => {
    const { outcomes } = feed([
      { id: 'a', stream: 's', batch: 'b1', expect: -1 },
      { id: 'b', stream: 's', batch: 'b2', expect: 0 },
      { id: 'a', stream: 's', batch: 'b3', expect: -1 },
    ]);
    expect(outcomes[2]).toEqual({ kind: 'duplicate' });
  });

  it('given a torn batch, then its records are void', () => {
    const { visible } = feed([
      { id: 'a', batch: 'b1', seq: 0, count: 3 },
      { id: 'b', batch: 'b1', seq: 1, count: 3 },
      { id: 'c', batch: 'b2' },
      { id: 'd', batch: 'b1', seq: 2, count: 3 },
    ]);
    expect(visible).toEqual([['c', 3, 0]]);
  });

  it('given a pending batch, then nothing of it is decided yet', () => {
    const index = createLogIndex();
    index.ingest(0, { batchId: 'b', seq: 0, count: 2 }, JSON.stringify({ id: 'a', stream: 's' }));
    expect([index.scanned, index.decided, index.head]).toEqual([1, 0, 0]);
    // Offsets below `scanned` are ignored: a restarted consumer may send them again.
    expect(index.ingest(0, { batchId: 'b', seq: 0, count: 2 }, '{}')).toBeUndefined();
    index.ingest(1, { batchId: 'b', seq: 1, count: 2 }, JSON.stringify({ id: 'b', stream: 's' }));
    expect([index.scanned, index.decided, index.head]).toEqual([2, 2, 2]);
  });

  it('given a record that is not Shoal’s, then LOG_CORRUPT naming its offset', () => {
    const index = createLogIndex();
    expect(() => index.ingest(0, undefined, '{}')).toThrow(
      expect.objectContaining({ code: 'LOG_CORRUPT', detail: { offset: 0 } }),
    );
    expect(() => index.ingest(0, { batchId: 'b', seq: 0, count: 1 }, 'not json')).toThrow(
      expect.objectContaining({ code: 'LOG_CORRUPT' }),
    );
    expect(() =>
      index.ingest(0, { batchId: 'b', seq: 0, count: 1, format: 2 }, '{"id":"a","stream":"s"}'),
    ).toThrow(/upgrade/);
  });
});

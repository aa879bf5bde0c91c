import type { GivenEvent } from '../test/fixtures/projections';
import { given } from '../test/fixtures/projections';
import { replicationProjection } from './replication';

const digest = (n: number) => `sha256:${String(n).repeat(64).slice(0, 64)}`;
const destination = 'http://b:5000';

/** Given events at positions 1, 2, …, a rule's document after them. */
const project = (...events: GivenEvent[]) => {
  const state = given(replicationProjection, ...events);
  return (id: string) => state.get('rules', id);
};

const added = (id: string, backfill = false): GivenEvent => [
  'ReplicationRuleAdded',
  { id, name: id, repoPattern: 'team/**', tagPattern: '*', destination, backfill },
];
const succeeded = (ruleId: string, sourcePosition: number, tag = 'v1'): GivenEvent => [
  'ReplicationSucceeded',
  { ruleId, repo: 'team/app', tag, digest: digest(1), destination, sourcePosition },
];
const failed = (
  ruleId: string,
  sourcePosition: number,
  attempt: number,
  retryAt?: string,
): GivenEvent => [
  'ReplicationFailed',
  {
    ruleId,
    repo: 'team/app',
    tag: 'v1',
    destination,
    sourcePosition,
    attempt,
    error: `boom ${attempt}`,
    ...(retryAt !== undefined && { retryAt }),
  },
];

describe('replication projection', () => {
  it('given a rule added, starts it at its own position (or 0 with backfill)', () => {
    const doc = project(
      added('r1'),
      ['TagPushed', { repo: 'x', tag: 't', digest: digest(2) }],
      added('r2', true),
    );
    expect(doc('r1')).toMatchObject({ addedPosition: 1, lastPosition: 1, replicated: 0 });
    expect(doc('r2')).toMatchObject({ addedPosition: 3, lastPosition: 0, backfill: true });
  });

  it('moves the position with successes and counts failures until the next success', () => {
    const doc = project(
      added('r1'),
      failed('r1', 5, 1, '2026-01-01T00:00:10Z'),
      failed('r1', 5, 2, '2026-01-01T00:00:11Z'),
      succeeded('r1', 5),
      failed('r1', 9, 1, '2026-01-01T00:00:12Z'),
    )('r1');
    expect(doc).toMatchObject({
      lastPosition: 5,
      replicated: 1,
      skipped: 0,
      lastReplicated: { repo: 'team/app', tag: 'v1', sourcePosition: 5, digest: digest(1) },
      failures: {
        total: 3,
        consecutive: 1,
        last: { attempt: 1, sourcePosition: 9, error: 'boom 1' },
      },
    });
  });

  it('a failure without retryAt is given up: the position moves past it', () => {
    const doc = project(added('r1'), failed('r1', 7, 3))('r1');
    expect(doc).toMatchObject({ lastPosition: 7, skipped: 1, replicated: 0 });
    expect(doc?.failures.last?.retryAt).toBeUndefined();
  });

  it('never moves the position back (a late duplicate from a second replicator)', () => {
    const doc = project(added('r1'), succeeded('r1', 9), succeeded('r1', 4))('r1');
    expect(doc?.lastPosition).toBe(9);
  });

  it('keeps a removed rule with when it was removed; events of unknown rules are ignored', () => {
    const get = project(added('r1'), ['ReplicationRuleRemoved', { id: 'r1' }], succeeded('zz', 3));
    expect(get('r1')).toMatchObject({ removedPosition: 2 });
    expect(get('zz')).toBeUndefined();
  });

  it('ignores a second add of the same id', () => {
    const doc = project(added('r1'), succeeded('r1', 5), added('r1'))('r1');
    expect(doc).toMatchObject({ addedPosition: 1, lastPosition: 5 });
  });
});

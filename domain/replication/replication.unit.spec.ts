import { backoffDelay, defaultBackoff, givesUp } from './backoff';
import { replicationLag } from './lag';
import { ruleMatches } from './patterns';
import {
  destinationAllowed,
  destinationHost,
  parseDestination,
  ruleIdFor,
  ruleSelects,
  validateRuleInput,
} from './rules';

describe('replication patterns', () => {
  it('selects by repository and tag glob; * and ** alike over tags, case-sensitively', () => {
    expect(ruleMatches({ repoPattern: '**', tagPattern: 'v1.*' }, 'a/b', 'v1.2')).toBe(true);
    expect(ruleMatches({ repoPattern: '**', tagPattern: 'v1.*' }, 'a/b', 'V1.2')).toBe(false);
    expect(ruleMatches({ repoPattern: 'a/*', tagPattern: '**' }, 'a/b', 'latest')).toBe(true);
  });
});

describe('replication rules', () => {
  it('allows only destinations an allowlist glob matches', () => {
    const allowlist = ['https://*.example.com', 'http://127.0.0.1:*'];
    expect(destinationAllowed(allowlist, 'https://dr.example.com')).toBe(true);
    expect(destinationAllowed(allowlist, 'http://127.0.0.1:5000')).toBe(true);
    expect(destinationAllowed(allowlist, 'http://127.0.0.1')).toBe(false);
    expect(destinationAllowed(allowlist, 'https://evil.com')).toBe(false);
    expect(destinationAllowed(allowlist, 'https://dr.example.com.evil.com')).toBe(false);
    expect(destinationAllowed([], 'https://dr.example.com')).toBe(false);
    expect(destinationAllowed(['**'], 'http://anything:1')).toBe(true);
  });

  it('normalises a destination and refuses credentials, paths and other schemes', () => {
    expect(parseDestination('http://127.0.0.1:5000/')).toEqual({
      ok: true,
      value: 'http://127.0.0.1:5000',
    });
    expect(parseDestination('https://Registry.Example.com').ok).toBe(true);
    for (const bad of [
      'http://user:pw@host',
      'ftp://host',
      'http://host/prefix',
      'http://host?x=1',
      'host:5000',
    ]) {
      expect(parseDestination(bad).ok).toBe(false);
    }
    expect(destinationHost('http://127.0.0.1:5000')).toBe('127.0.0.1:5000');
  });

  it('validates input with defaults: every tag, no backfill', () => {
    const rule = validateRuleInput({ repoPattern: 'team/**', destination: 'http://b:5000' });
    expect(rule).toEqual({
      ok: true,
      value: {
        repoPattern: 'team/**',
        tagPattern: '*',
        destination: 'http://b:5000',
        backfill: false,
      },
    });
  });

  it('makes readable ids from names', () => {
    expect(ruleIdFor('A to B!', '1a2b')).toBe('a-to-b-1a2b');
    expect(ruleIdFor(undefined, '1a2b')).toBe('rule-1a2b');
    expect(ruleIdFor('***', 'x')).toBe('rule-x');
  });

  describe('given a rule added at position 10', () => {
    const scope = { repoPattern: 'team/**', tagPattern: '*' };
    const change = (position: number, repo = 'team/app') =>
      ({ kind: 'pushed', repo, tag: 'v1', position }) as const;

    it('selects matching changes after it, not before', () => {
      const rule = { ...scope, backfill: false };
      expect(ruleSelects(rule, 10, change(11))).toBe(true);
      expect(ruleSelects(rule, 10, change(9))).toBe(false);
      expect(ruleSelects(rule, 10, change(11, 'other/app'))).toBe(false);
    });

    it('with backfill, selects earlier changes too', () => {
      expect(ruleSelects({ ...scope, backfill: true }, 10, change(1))).toBe(true);
    });
  });
});

describe('backoff', () => {
  const policy = { initialMs: 100, maxMs: 1000, multiplier: 2, jitter: 0.5 };

  it('doubles per attempt up to the cap, before jitter', () => {
    expect([1, 2, 3, 4, 5, 10].map((n) => backoffDelay(n, policy, 0))).toEqual([
      100, 200, 400, 800, 1000, 1000,
    ]);
  });

  it('draws the jittered delay from [base × (1 − jitter), base]', () => {
    expect(backoffDelay(3, policy, 0.999_999)).toBe(200);
    expect(backoffDelay(3, policy, 0.5)).toBe(300);
    expect(backoffDelay(3, { ...policy, jitter: 0 }, 0.9)).toBe(400);
  });

  it('stays finite for absurd attempt counts', () => {
    expect(backoffDelay(10_000, defaultBackoff, 0)).toBe(defaultBackoff.maxMs);
  });

  it('retries forever unless max attempts is set', () => {
    expect(givesUp(1_000_000, 0)).toBe(false);
    expect(givesUp(4, 5)).toBe(false);
    expect(givesUp(5, 5)).toBe(true);
  });
});

describe('lag', () => {
  const now = Date.parse('2026-01-01T00:01:00Z');

  it('is zero when nothing matching is pending, whatever the head', () => {
    expect(replicationLag({ head: 500, now })).toEqual({ positions: 0, seconds: 0 });
  });

  it('counts positions from the oldest pending change to the head, and its age', () => {
    expect(
      replicationLag({ head: 20, firstPending: { position: 18, at: '2026-01-01T00:00:30Z' }, now }),
    ).toEqual({ positions: 3, seconds: 30 });
  });
});

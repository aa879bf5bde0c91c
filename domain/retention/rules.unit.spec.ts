import { formatBytes, namespacesOf, parseBytes } from '../quota/quota';
import { describeKeep, parseDuration, parseRetentionInput } from './rules';

describe('retention and quota inputs', () => {
  it.each([
    ['90d', 90 * 86_400_000],
    ['12h', 12 * 3_600_000],
    ['1w2d', 9 * 86_400_000],
    ['1500ms', 1500],
  ])('duration %s', (text, ms) => {
    expect(parseDuration(text)).toEqual({ ok: true, value: ms });
  });

  it('refuses durations and sizes it cannot read', () => {
    expect(parseDuration('soon').ok).toBe(false);
    expect(parseDuration('').ok).toBe(false);
    expect(parseBytes('ten').ok).toBe(false);
  });

  it.each([
    ['10GiB', 10 * 2 ** 30],
    ['500MB', 500e6],
    ['1024', 1024],
  ])('size %s', (text, bytes) => {
    expect(parseBytes(text)).toEqual({ ok: true, value: bytes });
  });

  it('a rule needs exactly one of keep-last and keep-within', () => {
    expect(parseRetentionInput({ repoPattern: 'a/*' }).ok).toBe(false);
    expect(parseRetentionInput({ repoPattern: 'a/*', keepLast: 1, keepWithin: '1d' }).ok).toBe(
      false,
    );
    const rule = parseRetentionInput({
      repoPattern: 'a/*',
      keepWithin: '30d',
      protect: ['release-*'],
    });
    expect(rule).toEqual({
      ok: true,
      value: {
        repoPattern: 'a/*',
        tagPattern: '*',
        keepWithinMs: 30 * 86_400_000,
        protect: ['release-*'],
      },
    });
    if (rule.ok) expect(describeKeep({ id: 'x', ...rule.value })).toBe('keep within 30d');
  });

  it('a repository is in every namespace that prefixes it', () => {
    expect(namespacesOf('team/app/web')).toEqual(['team', 'team/app', 'team/app/web']);
    expect(formatBytes(1536)).toBe('1.5 KiB');
  });
});

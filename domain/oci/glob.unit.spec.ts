import { matchesGlob, parsePattern } from './glob';

describe('globs over repository names and tags', () => {
  it.each([
    ['team/*', 'team/app', true],
    ['team/*', 'team/app/web', false],
    ['team/*', 'team', false],
    ['team/**', 'team/app', true],
    ['team/**', 'team/app/web', true],
    ['team/**', 'other/app', false],
    ['**', 'a/b/c', true],
    ['**', '', true],
    ['**/web', 'web', true],
    ['**/web', 'team/app/web', true],
    ['**/web', 'team/webs', false],
    ['**/web', '/web', true],
    ['**/*', 'a', true],
    ['team/app-?', 'team/app-1', true],
    ['team/app-?', 'team/app-10', false],
    ['team/?', 'team//', false],
    ['team/a.b', 'team/axb', false],
    ['*', 'app', true],
    ['*', 'team/app', false],
    ['*/**/x', 'a/x', false],
    ['*/**/x', 'a/b/x', true],
    ['a*b*c', 'abc', true],
    ['a*b*c', 'aXbYc', true],
    ['a*b*c', 'aXbYcZ', false],
    ['app', 'my-app', false],
    ['app', 'app', true],
  ])('%s matches %s: %s', (pattern, name, expected) => {
    expect(matchesGlob(pattern, name)).toBe(expected);
  });

  it('refuses characters that would mean something else', () => {
    for (const bad of ['team/[ab]', 'team/{a,b}', 'Team/*', 'a\\b', '', 'a/***']) {
      expect(parsePattern(bad, 'repository').ok).toBe(false);
    }
    expect(parsePattern('v1.*', 'tag').ok).toBe(true);
    expect(parsePattern('V1_*', 'tag').ok).toBe(true);
    expect(parsePattern('a/b', 'tag').ok).toBe(false);
  });

  it('matches in linear time: *a*a*a…*c against 255 characters is quick', () => {
    // A backtracking regular expression needs about C(255, 40) steps here.
    const pattern = `${'*a'.repeat(40)}*c`;
    const patternGlobstar = `${'**a'.repeat(40)}**c`;
    const name = 'a'.repeat(255);
    expect(parsePattern(pattern, 'repository').ok).toBe(true);
    const started = process.hrtime.bigint();
    expect(matchesGlob(pattern, name)).toBe(false);
    expect(matchesGlob(patternGlobstar, name)).toBe(false);
    expect(matchesGlob(pattern, `${name.slice(1)}c`)).toBe(true);
    const elapsedMs = Number(process.hrtime.bigint() - started) / 1e6;
    // Generous for a loaded machine; the backtracking version never finishes.
    expect(elapsedMs).toBeLessThan(500);
  });
});

import type { Digest, RepoName, Tag } from '../../domain';
import { ShoalError } from '../../domain';
import type { RecheckResult, TagFreshnessDeps } from './tagFreshness';
import { createTagFreshness } from './tagFreshness';

const repo = 'hub/library/app' as RepoName;
const tag = 'v1' as Tag;
const a = `sha256:${'a'.repeat(64)}` as Digest;
const b = `sha256:${'b'.repeat(64)}` as Digest;

/** A freshness over an upstream that is a map of tags (absent repo: not pulled through). */
const given = (options: Partial<TagFreshnessDeps> & { upstream?: Map<string, Digest> } = {}) => {
  let now = 1_000_000;
  const asked: string[] = [];
  const results: RecheckResult[] = [];
  const upstream = options.upstream ?? new Map([[`${repo}:${tag}`, a]]);
  const freshness = createTagFreshness({
    clock: { now: () => now },
    recheckMs: 10_000,
    waitMs: 0,
    upstreamDigest: async (r, t) => {
      asked.push(`${r}:${t}`);
      if (!r.startsWith('hub/')) return undefined;
      const digest = upstream.get(`${r}:${t}`);
      if (digest === undefined) throw new ShoalError('MANIFEST_UNKNOWN', 'no such tag');
      return digest;
    },
    pull: async (r, t) => upstream.get(`${r}:${t}`) as Digest,
    count: (result) => results.push(result),
    ...options,
  });
  return { freshness, asked, results, upstream, advance: (ms: number) => (now += ms) };
};

describe('tag freshness', () => {
  it('asks once the recheck time has passed since the last check, not before', async () => {
    const { freshness, asked, results, upstream, advance } = given();
    freshness.pulled(repo, tag);
    upstream.set(`${repo}:${tag}`, b);
    advance(9_999);
    await expect(freshness.current(repo, tag, a)).resolves.toBe(a);
    expect(asked).toEqual([]);
    advance(1);
    await expect(freshness.current(repo, tag, a)).resolves.toBe(b);
    expect(results).toEqual(['moved']);
  });

  it('asks on every pull with a recheck time of 0', async () => {
    const { freshness, asked } = given({ recheckMs: 0 });
    freshness.pulled(repo, tag);
    await freshness.current(repo, tag, a);
    await freshness.current(repo, tag, a);
    expect(asked).toHaveLength(2);
  });

  it('remembers a repository that is no pull-through namespace for at least a minute', async () => {
    const local = 'team/app' as RepoName;
    const { freshness, asked, results, advance } = given({ recheckMs: 0 });
    await expect(freshness.current(local, tag, a)).resolves.toBe(a);
    await expect(freshness.current(local, 'v2' as Tag, a)).resolves.toBe(a);
    expect(asked).toEqual([`${local}:${tag}`]);
    expect(results).toEqual(['local']);
    advance(60_001);
    await freshness.current(local, tag, a);
    expect(asked).toHaveLength(2);
  });

  it('answers the known digest, never an error, when the upstream fails or lacks the tag', async () => {
    const { freshness, results, advance } = given({
      upstreamDigest: async () => {
        throw new ShoalError('STORAGE_UNAVAILABLE', 'connection refused');
      },
    });
    await expect(freshness.current(repo, tag, a)).resolves.toBe(a);
    // Counted as a check: not asked again before the recheck time.
    await expect(freshness.current(repo, tag, a)).resolves.toBe(a);
    expect(results).toEqual(['failed']);
    advance(10_000);
    await freshness.current(repo, tag, a);
    expect(results).toEqual(['failed', 'failed']);
    const gone = given({ upstream: new Map() });
    await expect(gone.freshness.current(repo, tag, a)).resolves.toBe(a);
    expect(gone.results).toEqual(['gone']);
  });

  it('forgets the oldest checks beyond maxEntries', async () => {
    const { freshness, asked } = given({ maxEntries: 2 });
    for (const t of ['t1', 't2', 't3']) freshness.pulled(repo, t as Tag);
    await freshness.current(repo, 't3' as Tag, a);
    await freshness.current(repo, 't2' as Tag, a);
    expect(asked).toEqual([]);
    await freshness.current(repo, 't1' as Tag, a).catch(() => undefined);
    expect(asked).toEqual([`${repo}:t1`]);
  });
});

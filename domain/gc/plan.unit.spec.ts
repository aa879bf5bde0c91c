import type { RetentionRule } from '../retention/rules';
import type { BlobNode, GcInput, ManifestNode } from './plan';
import { planCollection } from './plan';

const d = (c: string) => `sha256:${c.repeat(64)}`;
const hour = 3_600_000;
const now = Date.UTC(2026, 5, 1);
const old = now - 10 * hour;

const image = (
  repo: string,
  digest: string,
  blobs: string[],
  extra: Partial<ManifestNode> = {},
): ManifestNode => ({
  repo,
  digest,
  mediaType: 'application/vnd.oci.image.manifest.v1+json',
  size: 500,
  blobs,
  manifests: [],
  tags: [],
  touchedPosition: 1,
  touchedAt: old,
  ...extra,
});

const blob = (digest: string, repos: string[], extra: Partial<BlobNode> = {}): BlobNode => ({
  digest,
  size: 1000,
  links: repos.map((repo) => ({ repo, at: old })),
  touchedAt: old,
  ...extra,
});

const plan = (input: Partial<GcInput>) =>
  planCollection({ now, graceMs: 2 * hour, manifests: [], blobs: [], rules: [], ...input });

const tag = (name: string, position: number, at = old) => ({ tag: name, position, at });

describe('GC plan', () => {
  it('given an untagged manifest older than the grace window, collects it and its blobs', () => {
    const result = plan({
      manifests: [image('a/app', d('1'), [d('2'), d('3')])],
      blobs: [blob(d('1'), ['a/app']), blob(d('2'), ['a/app']), blob(d('3'), ['a/app'])],
    });
    expect(result.manifests.map((m) => [m.digest, m.reason])).toEqual([[d('1'), 'untagged']]);
    expect(result.blobs.map((b) => b.digest).sort()).toEqual([d('1'), d('2'), d('3')]);
    expect(result.blobs[0]?.repos).toEqual(['a/app']);
    expect(result.examined).toEqual({ manifests: 1, blobs: 3, bytes: 3000 });
  });

  it('keeps tagged manifests, what they reference, and what was pushed within the grace', () => {
    const result = plan({
      manifests: [
        image('a/app', d('1'), [d('2')], { tags: [tag('v1', 5)] }),
        image('a/app', d('4'), [d('5')], { touchedAt: now - hour }),
      ],
      blobs: [
        blob(d('1'), ['a/app']),
        blob(d('2'), ['a/app']),
        blob(d('4'), ['a/app']),
        blob(d('5'), ['a/app']),
        blob(d('6'), ['a/app'], { touchedAt: now - 60_000 }),
        blob(d('7'), ['a/app']),
      ],
    });
    expect(result.manifests).toEqual([]);
    expect(result.blobs.map((b) => b.digest)).toEqual([d('7')]);
  });

  it('keeps the children of a live index and the referrers of a live subject', () => {
    const index = image('a/app', d('a'), [], {
      mediaType: 'application/vnd.oci.image.index.v1+json',
      manifests: [d('1')],
      tags: [tag('latest', 9)],
    });
    const signature = image('a/app', d('s'), [d('x')], { subject: d('a') });
    const result = plan({
      manifests: [index, image('a/app', d('1'), [d('2')]), signature],
      blobs: [blob(d('2'), ['a/app']), blob(d('x'), ['a/app'])],
    });
    expect(result.manifests).toEqual([]);
    expect(result.blobs).toEqual([]);
  });

  it('removes a dead index before its children and a subject before its referrers', () => {
    const index = image('a/app', d('a'), [], {
      mediaType: 'application/vnd.oci.image.index.v1+json',
      manifests: [d('1')],
    });
    const result = plan({
      manifests: [
        image('a/app', d('s'), [], { subject: d('1') }),
        image('a/app', d('1'), []),
        index,
      ],
    });
    expect(result.manifests.map((m) => m.digest)).toEqual([d('a'), d('1'), d('s')]);
  });

  it('a blob shared with a live manifest of another repository stays, its idle link goes', () => {
    const result = plan({
      manifests: [
        image('a/app', d('1'), [d('9')]),
        image('b/app', d('2'), [d('9')], { tags: [tag('v1', 3)] }),
      ],
      blobs: [blob(d('9'), ['a/app', 'b/app'])],
    });
    expect(result.blobs).toEqual([]);
    expect(result.links).toEqual([{ digest: d('9'), repo: 'a/app', size: 1000 }]);
  });

  it('a blob a client deleted is collected as deleted', () => {
    const result = plan({ blobs: [blob(d('1'), ['a/app'], { deleted: true })] });
    expect(result.blobs).toEqual([
      { digest: d('1'), size: 1000, repos: ['a/app'], reason: 'deleted' },
    ]);
  });

  it('keeps what a run found live after all (a compare-and-swap lost to a push)', () => {
    const result = plan({
      manifests: [image('a/app', d('1'), [d('2')])],
      blobs: [blob(d('2'), ['a/app'])],
      keep: { manifests: new Set([`a/app@${d('1')}`]) },
    });
    expect(result.manifests).toEqual([]);
    expect(result.blobs).toEqual([]);
  });
});

describe('GC plan: retention', () => {
  const rule = (extra: Partial<RetentionRule>): RetentionRule => ({
    id: 'r1',
    repoPattern: 'a/**',
    tagPattern: '*',
    ...extra,
  });

  it('keeps the last N tags by push time, a move counting as a push', () => {
    // v1 was created first but moved last: it is the newest push.
    const result = plan({
      rules: [rule({ keepLast: 2 })],
      manifests: [
        image('a/app', d('1'), [], { tags: [tag('v1', 40), tag('v2', 20)] }),
        image('a/app', d('2'), [], { tags: [tag('v3', 30), tag('v4', 10)] }),
      ],
    });
    expect(result.tags.map((t) => [t.tag, t.rule])).toEqual([
      ['v4', 'r1'],
      ['v2', 'r1'],
    ]);
    expect(result.manifests).toEqual([]);
  });

  it('untags and collects in one run; protected tags are never candidates', () => {
    const result = plan({
      rules: [rule({ keepLast: 1, protect: ['release-*'] })],
      manifests: [
        image('a/app', d('1'), [d('b')], { tags: [tag('release-1', 1)] }),
        image('a/app', d('2'), [d('c')], { tags: [tag('v2', 2)] }),
        image('a/app', d('3'), [d('e')], { tags: [tag('v3', 3)] }),
      ],
      blobs: [blob(d('b'), ['a/app']), blob(d('c'), ['a/app']), blob(d('e'), ['a/app'])],
    });
    expect(result.tags.map((t) => t.tag)).toEqual(['v2']);
    expect(result.manifests.map((m) => [m.digest, m.reason, m.rule])).toEqual([
      [d('2'), 'retention', 'r1'],
    ]);
    expect(result.blobs.map((b) => b.digest)).toEqual([d('c')]);
  });

  it('keeps tags pushed within the window', () => {
    const result = plan({
      rules: [rule({ keepWithinMs: 24 * hour })],
      manifests: [
        image('a/app', d('1'), [], {
          tags: [tag('fresh', 2, now - hour), tag('stale', 1, now - 48 * hour)],
        }),
      ],
    });
    expect(result.tags.map((t) => t.tag)).toEqual(['stale']);
  });

  it('a tag any matching rule keeps is kept', () => {
    const result = plan({
      rules: [rule({ id: 'few', keepLast: 0 }), rule({ id: 'v', tagPattern: 'v*', keepLast: 5 })],
      manifests: [image('a/app', d('1'), [], { tags: [tag('v1', 1), tag('dev', 2)] })],
    });
    expect(result.tags.map((t) => [t.tag, t.rule])).toEqual([['dev', 'few']]);
  });

  it('with untagged, ranks untagged manifests with the tags and keeps the last ones', () => {
    const result = plan({
      rules: [rule({ keepLast: 2, untagged: true })],
      manifests: [
        image('a/app', d('1'), [], { touchedPosition: 1 }),
        image('a/app', d('2'), [], { touchedPosition: 2 }),
        image('a/app', d('3'), [], { tags: [tag('v3', 3)] }),
      ],
    });
    expect(result.tags).toEqual([]);
    expect(result.manifests.map((m) => [m.digest, m.reason])).toEqual([[d('1'), 'retention']]);
  });

  it('a rule outside the repository pattern changes nothing', () => {
    const result = plan({
      rules: [rule({ repoPattern: 'b/*', keepLast: 0 })],
      manifests: [image('a/app', d('1'), [], { tags: [tag('v1', 1)] })],
    });
    expect(result.tags).toEqual([]);
  });

  it('keeps tags a run could not delete', () => {
    const result = plan({
      rules: [rule({ keepLast: 0 })],
      manifests: [image('a/app', d('1'), [d('2')], { tags: [tag('v1', 1)] })],
      blobs: [blob(d('2'), ['a/app'])],
      keep: { tags: new Set(['a/app:v1']) },
    });
    expect(result.tags).toEqual([]);
    expect(result.manifests).toEqual([]);
  });
});

import type { RetentionRule } from '../retention/rules';
import type { TagNode } from './retention';
import { applyRetention } from './retention';

/** A manifest of one repository as the `references` projection holds it. */
export type ManifestNode = {
  readonly repo: string;
  readonly digest: string;
  readonly mediaType: string;
  readonly size: number;
  /** Config and layers. */
  readonly blobs: readonly string[];
  /** Child manifests (of an index), in the same repository. */
  readonly manifests: readonly string[];
  readonly subject?: string;
  /** Its tags: where each was last pushed (a move counts), position and ms. */
  readonly tags: readonly Omit<TagNode, 'repo' | 'digest'>[];
  /** Last push of the manifest or reference to it by an index: position and ms. */
  readonly touchedPosition: number;
  readonly touchedAt: number;
};

/** A blob as the `references` projection holds it. */
export type BlobNode = {
  readonly digest: string;
  readonly size: number;
  /** Repositories that link it (upload or mount), each with its last link time in ms. */
  readonly links: ReadonlyArray<{
    readonly repo: string;
    readonly at: number;
    readonly dead?: boolean;
  }>;
  /** Last upload, mount or reference by a manifest push, ms. */
  readonly touchedAt: number;
  /** A client deleted it (`BlobDeleted`) and nothing linked it again since. */
  readonly deleted?: boolean;
};

export type GcInput = {
  readonly now: number;
  /** Untagged manifests and blobs younger than this are kept (pushes in flight). */
  readonly graceMs: number;
  readonly manifests: readonly ManifestNode[];
  readonly blobs: readonly BlobNode[];
  readonly rules: readonly RetentionRule[];
  /**
   * What a run found it could not remove (a compare-and-swap lost to a push): tags
   * (`repo:tag`) to keep and manifests (`repo@digest`) that are live after all.
   */
  readonly keep?: { readonly tags?: ReadonlySet<string>; readonly manifests?: ReadonlySet<string> };
};

export type TagRemoval = TagNode & { readonly rule: string };
export type ManifestRemoval = ManifestNode & {
  readonly reason: 'untagged' | 'retention';
  readonly rule?: string;
};
export type BlobRemoval = {
  readonly digest: string;
  readonly size: number;
  readonly repos: readonly string[];
  readonly reason: 'unreferenced' | 'deleted';
};
export type LinkRemoval = { readonly digest: string; readonly repo: string; readonly size: number };

export type GcPlan = {
  readonly tags: readonly TagRemoval[];
  /** Parents before their children: an index before its manifests, a subject before its referrers. */
  readonly manifests: readonly ManifestRemoval[];
  readonly blobs: readonly BlobRemoval[];
  readonly links: readonly LinkRemoval[];
  readonly examined: { readonly manifests: number; readonly blobs: number; readonly bytes: number };
};

export const manifestKey = (repo: string, digest: string): string => `${repo}@${digest}`;

/**
 * What a GC run removes, decided on one snapshot of the `references` projection (pure):
 *
 * 1. tags no retention rule keeps;
 * 2. manifests no live root reaches: roots are tagged manifests, manifests pushed or
 *    referenced within the grace window, and untagged manifests a rule keeps; a live manifest
 *    keeps its child manifests (index) and its referrers (`subject`) in the same repository;
 * 3. blobs no live manifest uses (config, layers, the manifest's own bytes), not uploaded,
 *    mounted or referenced within the grace window;
 * 4. links of live blobs to repositories none of whose live manifests use them, not renewed
 *    within the grace window.
 *
 * Safe only with the compare-and-swap the run does on each stream (see services/gc).
 */
export const planCollection = (input: GcInput): GcPlan => {
  const { now, graceMs } = input;
  const horizon = now - graceMs;
  const keepTags = input.keep?.tags ?? new Set<string>();
  const forced = input.keep?.manifests ?? new Set<string>();
  const byKey = new Map<string, ManifestNode>();
  for (const m of input.manifests) byKey.set(manifestKey(m.repo, m.digest), m);

  // 1. Retention.
  const tags: TagNode[] = [];
  for (const m of input.manifests) {
    for (const t of m.tags) tags.push({ ...t, repo: m.repo, digest: m.digest });
  }
  const untagged = input.manifests
    .filter((m) => m.tags.length === 0)
    .map((m) => ({ repo: m.repo, digest: m.digest, position: m.touchedPosition, at: m.touchedAt }));
  const retention = applyRetention({ now, rules: input.rules, tags, untagged });
  const tagRemovals = retention.deleteTags.filter((t) => !keepTags.has(`${t.repo}:${t.tag}`));
  const untaggedBy = new Map<string, string>();
  const removed = new Set(tagRemovals.map((t) => `${t.repo}:${t.tag}`));
  for (const t of tagRemovals) {
    const key = manifestKey(t.repo, t.digest);
    if (!untaggedBy.has(key)) untaggedBy.set(key, t.rule);
  }

  // 2. Mark from the roots.
  const referrers = new Map<string, string[]>();
  for (const m of input.manifests) {
    if (m.subject === undefined) continue;
    const subject = manifestKey(m.repo, m.subject);
    const list = referrers.get(subject) ?? [];
    list.push(manifestKey(m.repo, m.digest));
    referrers.set(subject, list);
  }
  const childrenOf = (key: string): string[] => {
    const m = byKey.get(key) as ManifestNode;
    return [
      ...m.manifests.map((d) => manifestKey(m.repo, d)).filter((k) => byKey.has(k)),
      ...(referrers.get(key) ?? []),
    ];
  };
  const live = new Set<string>();
  const stack: string[] = [];
  for (const [key, m] of byKey) {
    const tagged = m.tags.some((t) => !removed.has(`${m.repo}:${t.tag}`));
    if (tagged || m.touchedAt > horizon || retention.keepUntagged.has(key) || forced.has(key)) {
      stack.push(key);
    }
  }
  while (stack.length > 0) {
    const key = stack.pop() as string;
    if (live.has(key)) continue;
    live.add(key);
    for (const child of childrenOf(key)) if (!live.has(child)) stack.push(child);
  }

  // Dead manifests, parents first (reverse post-order over parent → child edges).
  const dead = [...byKey.keys()].filter((key) => !live.has(key));
  const deadSet = new Set(dead);
  const visited = new Set<string>();
  const postOrder: string[] = [];
  const visit = (start: string) => {
    const work: Array<{ key: string; children: string[]; i: number }> = [
      { key: start, children: childrenOf(start).filter((c) => deadSet.has(c)), i: 0 },
    ];
    visited.add(start);
    while (work.length > 0) {
      const top = work[work.length - 1] as { key: string; children: string[]; i: number };
      const next = top.children[top.i++];
      if (next === undefined) {
        postOrder.push(top.key);
        work.pop();
      } else if (!visited.has(next)) {
        visited.add(next);
        work.push({ key: next, children: childrenOf(next).filter((c) => deadSet.has(c)), i: 0 });
      }
    }
  };
  for (const key of dead) if (!visited.has(key)) visit(key);
  const manifests: ManifestRemoval[] = postOrder.reverse().map((key) => {
    const m = byKey.get(key) as ManifestNode;
    const rule = untaggedBy.get(key) ?? retention.dropUntagged.get(key);
    return rule === undefined
      ? { ...m, reason: 'untagged' as const }
      : { ...m, reason: 'retention' as const, rule };
  });

  // 3 and 4. Blobs and links.
  const usedIn = new Map<string, Set<string>>();
  const use = (digest: string, repo: string) => {
    const repos = usedIn.get(digest) ?? new Set<string>();
    repos.add(repo);
    usedIn.set(digest, repos);
  };
  for (const key of live) {
    const m = byKey.get(key) as ManifestNode;
    use(m.digest, m.repo);
    for (const blob of m.blobs) use(blob, m.repo);
  }
  const blobs: BlobRemoval[] = [];
  const links: LinkRemoval[] = [];
  let bytes = 0;
  for (const blob of input.blobs) {
    bytes += blob.size;
    const repos = usedIn.get(blob.digest);
    if (repos === undefined) {
      if (blob.touchedAt > horizon) continue;
      blobs.push({
        digest: blob.digest,
        size: blob.size,
        repos: blob.links.map((l) => l.repo),
        reason: blob.deleted === true ? 'deleted' : 'unreferenced',
      });
      continue;
    }
    for (const link of blob.links) {
      if (!repos.has(link.repo) && (link.dead === true || link.at <= horizon)) {
        links.push({ digest: blob.digest, repo: link.repo, size: blob.size });
      }
    }
  }
  return {
    tags: tagRemovals,
    manifests,
    blobs,
    links,
    examined: { manifests: input.manifests.length, blobs: input.blobs.length, bytes },
  };
};

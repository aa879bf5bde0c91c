import { matchesGlob } from '../oci/glob';
import type { RetentionRule } from '../retention/rules';
import { isProtected } from '../retention/rules';

/** A tag as retention sees it: where it points and when it was last pushed (or moved). */
export type TagNode = {
  readonly repo: string;
  readonly tag: string;
  readonly digest: string;
  /** Position of the tag's last `TagPushed`: a move counts as a push. */
  readonly position: number;
  /** Time of that push, ms since the epoch. */
  readonly at: number;
};

/** An untagged manifest as a rule with `untagged` ranks it (by its last push). */
export type UntaggedNode = {
  readonly repo: string;
  readonly digest: string;
  readonly position: number;
  readonly at: number;
};

export type RetentionOutcome = {
  /** Tags no rule keeps, with the first rule that matched them. */
  readonly deleteTags: ReadonlyArray<TagNode & { readonly rule: string }>;
  /** `repo@digest` of untagged manifests a rule keeps: GC keeps them past its grace window. */
  readonly keepUntagged: ReadonlySet<string>;
  /** `repo@digest` → rule, for untagged candidates no rule keeps. */
  readonly dropUntagged: ReadonlyMap<string, string>;
};

type Candidate = {
  readonly key: string;
  readonly repo: string;
  readonly position: number;
  readonly at: number;
  readonly tag?: TagNode;
};

/**
 * Applies retention rules to the tags (and, for rules with `untagged`, the untagged
 * manifests) at one snapshot. Each rule ranks its candidates per repository, newest push
 * first, and keeps the first `keepLast` or those pushed within `keepWithinMs` of `now`. A
 * candidate is kept when any rule that matches it keeps it; otherwise it goes, named after
 * the first such rule. Tags a `protect` pattern of any rule matches are never candidates.
 */
export const applyRetention = (input: {
  readonly now: number;
  readonly rules: readonly RetentionRule[];
  readonly tags: readonly TagNode[];
  readonly untagged: readonly UntaggedNode[];
}): RetentionOutcome => {
  const { now, rules } = input;
  const matched = new Map<string, { candidate: Candidate; rules: string[]; kept: boolean }>();
  for (const rule of rules) {
    const byRepo = new Map<string, Candidate[]>();
    const add = (candidate: Candidate) => {
      const list = byRepo.get(candidate.repo) ?? [];
      list.push(candidate);
      byRepo.set(candidate.repo, list);
    };
    for (const tag of input.tags) {
      if (!matchesGlob(rule.repoPattern, tag.repo) || !matchesGlob(rule.tagPattern, tag.tag)) {
        continue;
      }
      if (isProtected(rules, tag.tag)) continue;
      add({
        key: `${tag.repo}:${tag.tag}`,
        repo: tag.repo,
        position: tag.position,
        at: tag.at,
        tag,
      });
    }
    if (rule.untagged === true) {
      for (const m of input.untagged) {
        if (matchesGlob(rule.repoPattern, m.repo)) {
          add({ key: `${m.repo}@${m.digest}`, repo: m.repo, position: m.position, at: m.at });
        }
      }
    }
    for (const list of byRepo.values()) {
      list.sort((a, b) => b.position - a.position);
      list.forEach((candidate, rank) => {
        const keep =
          rule.keepLast !== undefined
            ? rank < rule.keepLast
            : candidate.at >= now - (rule.keepWithinMs ?? 0);
        const entry = matched.get(candidate.key) ?? { candidate, rules: [], kept: false };
        entry.rules.push(rule.id);
        entry.kept ||= keep;
        matched.set(candidate.key, entry);
      });
    }
  }
  const deleteTags: Array<TagNode & { rule: string }> = [];
  const keepUntagged = new Set<string>();
  const dropUntagged = new Map<string, string>();
  for (const { candidate, rules: ids, kept } of matched.values()) {
    const rule = ids[0] as string;
    if (candidate.tag !== undefined) {
      if (!kept) deleteTags.push({ ...candidate.tag, rule });
    } else if (kept) {
      keepUntagged.add(candidate.key);
    } else {
      dropUntagged.set(candidate.key, rule);
    }
  }
  deleteTags.sort((a, b) => a.position - b.position);
  return { deleteTags, keepUntagged, dropUntagged };
};

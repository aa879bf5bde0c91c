import { matchesGlob } from '../oci/glob';
import type { AccessAction } from './actions';
import { accessActions } from './actions';

/**
 * Who may do what to which repositories. A policy lists repositories (globs, as replication
 * rules write them), the users and groups it is for, and the actions it allows; what a caller
 * may do is the union of every policy that names them (and of the anonymous policy).
 * `users: ['*']` names every authenticated user. Admins may do everything, and alone may
 * manage replication rules.
 */
export type AccessPolicy = {
  readonly repositories: readonly string[];
  readonly users?: readonly string[];
  readonly groups?: readonly string[];
  readonly actions: readonly AccessAction[];
};

export type AccessPolicies = {
  readonly policies: readonly AccessPolicy[];
  /** What callers without credentials may do (default: nothing). */
  readonly anonymous: {
    readonly repositories: readonly string[];
    readonly actions: readonly AccessAction[];
  };
  /** User names, or `group:<name>` for every member of a group. */
  readonly admins: readonly string[];
};

/** Whom a decision is about: an authenticated user or robot, or nobody (anonymous). */
export type Principal =
  | { readonly kind: 'anonymous' }
  | { readonly kind: 'user'; readonly name: string; readonly groups: readonly string[] };

export const noAccess: AccessPolicies = {
  policies: [],
  anonymous: { repositories: [], actions: [] },
  admins: [],
};

export const isAdmin = (policies: AccessPolicies, who: Principal): boolean =>
  who.kind === 'user' &&
  policies.admins.some((entry) =>
    entry.startsWith('group:') ? who.groups.includes(entry.slice(6)) : entry === who.name,
  );

const names = (policy: AccessPolicy, who: Principal): boolean =>
  who.kind === 'user' &&
  ((policy.users ?? []).some((u) => u === '*' || u === who.name) ||
    (policy.groups ?? []).some((g) => who.groups.includes(g)));

const covers = (repositories: readonly string[], repo: string): boolean =>
  repositories.some((pattern) => matchesGlob(pattern, repo));

/** Every action `who` may take on `repo`. */
export const allowedActions = (
  policies: AccessPolicies,
  who: Principal,
  repo: string,
): Set<AccessAction> => {
  if (isAdmin(policies, who)) return new Set(accessActions);
  const out = new Set<AccessAction>();
  if (covers(policies.anonymous.repositories, repo)) {
    for (const action of policies.anonymous.actions) out.add(action);
  }
  for (const policy of policies.policies) {
    if (names(policy, who) && covers(policy.repositories, repo)) {
      for (const action of policy.actions) out.add(action);
    }
  }
  return out;
};

export const mayAccess = (
  policies: AccessPolicies,
  who: Principal,
  repo: string,
  action: AccessAction,
): boolean => allowedActions(policies, who, repo).has(action);

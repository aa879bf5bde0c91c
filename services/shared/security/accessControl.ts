import type { AccessAction, AccessPolicies, Principal, ResourceAccess } from '../../../domain';
import { actionsOf, allowedActions, isAdmin, mayAccess } from '../../../domain';
import type { SecurityMode } from './authenticate';
import type { Subject } from './subject';

/**
 * What a request's credential says beyond who it is: a token's grants. A request authenticated
 * with a password (Basic) has none: the policies alone decide.
 */
export type Grant = {
  /** What the token allows; undefined: the policies decide. */
  readonly access?: readonly ResourceAccess[];
  /** Whether the policies must allow it too (Shoal's own tokens, OIDC tokens). */
  readonly checkPolicies: boolean;
  /** A Docker token server's `push` also moves tags (it knows no `overwrite`). */
  readonly pushOverwrites: boolean;
};

// Subjects are built per request by the authenticators, which record the token behind one
// here; nothing else can forge a grant for a subject.
const grants = new WeakMap<Subject, Grant>();

/** Records the grant of the token a subject was authenticated with. */
export const bindGrant = (subject: Subject, grant: Grant): Subject => {
  grants.set(subject, grant);
  return subject;
};

/**
 * The outcome of an access check:
 * - `allow`;
 * - `challenge`: answer 401 with a `WWW-Authenticate` challenge for the scope, so a client
 *   without credentials, or whose token lacks the scope, gets (another) token and retries;
 * - `deny`: answer 403 `DENIED` — the caller is known and the policies say no.
 */
export type Decision = 'allow' | 'challenge' | 'deny';

export type AccessControl = {
  readonly mode: SecurityMode;
  decide(subject: Subject, repo: string, action: AccessAction): Decision;
  /** Whether the subject may see the repository (listed in `_catalog`, …). */
  visible(subject: Subject, repo: string): boolean;
  /** Admins may do everything, and alone manage replication rules. */
  isAdmin(subject: Subject): boolean;
  /** Whether callers without credentials may pull anything (then lists are theirs to read). */
  anonymousPulls(): boolean;
  /** Actions the policies allow the subject on a repository (for the token endpoint). */
  allowed(subject: Subject, repo: string): Set<AccessAction>;
};

const tokenAllows = (grant: Grant, repo: string, action: AccessAction): boolean =>
  (grant.access ?? []).some((entry) => {
    if (entry.type !== 'repository' || entry.name !== repo) return false;
    const actions = actionsOf(entry.actions);
    return (
      actions.has(action) || (action === 'overwrite' && grant.pushOverwrites && actions.has('push'))
    );
  });

/**
 * Access decisions of one service over its policies. In `open` mode everything is allowed
 * (the audit trail still names whoever logged in). Cluster services may take `serviceActions`
 * (the proxy lets agents pull; build-index lets the proxy write tags for its users).
 */
export const createAccessControl = (options: {
  mode: SecurityMode;
  policies: AccessPolicies;
  /** group → its members, for users whose credential names no groups. */
  groups: Readonly<Record<string, readonly string[]>>;
  serviceActions: readonly AccessAction[];
}): AccessControl => {
  const { mode, policies } = options;
  const memberships = new Map<string, string[]>();
  for (const [group, members] of Object.entries(options.groups)) {
    for (const member of members) {
      memberships.set(member, [...(memberships.get(member) ?? []), group]);
    }
  }
  const principalOf = (subject: Subject): Principal =>
    subject.kind === 'user' || subject.kind === 'robot'
      ? {
          kind: 'user',
          name: subject.name,
          groups: [...new Set([...subject.groups, ...(memberships.get(subject.name) ?? [])])],
        }
      : { kind: 'anonymous' };
  const anonymousMay = (repo: string, action: AccessAction) =>
    mayAccess(policies, { kind: 'anonymous' }, repo, action);

  const decide = (subject: Subject, repo: string, action: AccessAction): Decision => {
    if (mode === 'open') return 'allow';
    if (subject.kind === 'service')
      return options.serviceActions.includes(action) ? 'allow' : 'deny';
    const grant = grants.get(subject);
    if (subject.kind === 'anonymous') {
      // An anonymous token of a Docker token server (or the proxy, seen from an agent).
      if (grant !== undefined && !grant.checkPolicies && tokenAllows(grant, repo, action)) {
        return 'allow';
      }
      return anonymousMay(repo, action) ? 'allow' : 'challenge';
    }
    const byPolicy = mayAccess(policies, principalOf(subject), repo, action);
    if (grant === undefined) return byPolicy ? 'allow' : 'deny';
    if (!grant.checkPolicies) {
      // A Docker token server decided what the token may do: ask it for another token.
      return tokenAllows(grant, repo, action) || anonymousMay(repo, action) ? 'allow' : 'challenge';
    }
    if (!byPolicy) return 'deny';
    if (grant.access === undefined || tokenAllows(grant, repo, action)) return 'allow';
    return 'challenge';
  };

  return {
    mode,
    decide,
    visible(subject, repo) {
      if (mode === 'open' || subject.kind === 'service') return true;
      const grant = grants.get(subject);
      if (grant !== undefined && !grant.checkPolicies) {
        return tokenAllows(grant, repo, 'pull') || anonymousMay(repo, 'pull');
      }
      return mayAccess(policies, principalOf(subject), repo, 'pull');
    },
    isAdmin(subject) {
      if (subject.kind !== 'user' && subject.kind !== 'robot') return false;
      return isAdmin(policies, principalOf(subject));
    },
    anonymousPulls: () =>
      policies.anonymous.repositories.length > 0 && policies.anonymous.actions.includes('pull'),
    allowed(subject, repo) {
      if (subject.kind === 'service') return new Set(options.serviceActions);
      return allowedActions(policies, principalOf(subject), repo);
    },
  };
};

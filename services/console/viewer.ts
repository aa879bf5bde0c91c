import type { FastifyRequest } from 'fastify';
import type { Subject } from '../shared/security/subject';
import { actorOf } from '../shared/security/subject';

/**
 * Who is looking, and what they may see. Every console read takes one: lists keep only the
 * repositories the viewer may pull, and what belongs to no repository (the ring, replication
 * rules, swarms of blobs no visible repository holds, events of other streams) only when
 * `seesCluster`. The HTTP layer makes one per request from the request's subject, so once
 * logins and repository policies guard the registry, the console is filtered by the same
 * decisions.
 */
export type Viewer = {
  /** The audit-trail name of the viewer (`anonymous`, `user:alice`, …), shown in the header. */
  readonly actor: string;
  mayPull(repo: string): boolean;
  readonly seesCluster: boolean;
};

/** The viewer of a console without access control: everything is visible. */
export const openViewer: Viewer = {
  actor: 'anonymous',
  mayPull: () => true,
  seesCluster: true,
};

/** Makes the viewer of a request (the composition root chooses: open, or the policies). */
export type ViewerOf = (request: FastifyRequest) => Viewer;

export const openAccess: ViewerOf = () => openViewer;

/** Whether a viewer may see something held by these repositories (any of them). */
export const mayPullAny = (viewer: Viewer, repos: readonly string[]): boolean =>
  viewer.seesCluster || repos.some((repo) => viewer.mayPull(repo));

/**
 * What the registry's policies decide for a subject: the same decisions that guard pulls
 * (issue 12's repository policies) decide what the console shows.
 */
export type RepositoryAccess = {
  mayPull(subject: Subject, repo: string): boolean;
  /** Whether the subject may see what belongs to no repository (ring, rules, all events). */
  seesCluster(subject: Subject): boolean;
};

/**
 * The viewer of an authenticated subject: named as the audit trail names it, each
 * repository decided once per request (a page asks about the same names many times).
 */
export const viewerFor = (subject: Subject, access: RepositoryAccess): Viewer => {
  const decided = new Map<string, boolean>();
  return {
    actor: actorOf(subject),
    mayPull: (repo) => {
      let allowed = decided.get(repo);
      if (allowed === undefined) {
        allowed = access.mayPull(subject, repo);
        if (decided.size < 10_000) decided.set(repo, allowed);
      }
      return allowed;
    },
    seesCluster: access.seesCluster(subject),
  };
};

/**
 * The viewer of each request from the registry's policies: the request's subject (the
 * console's authenticators set it: the registry's users, cluster services) decided by them.
 */
export const policyAccess =
  (access: RepositoryAccess): ViewerOf =>
  (request) =>
    viewerFor(request.subject, access);

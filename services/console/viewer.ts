import type { FastifyRequest } from 'fastify';

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

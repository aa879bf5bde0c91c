/**
 * Who made a request. Authentication turns a request into a `Subject`; every event the request
 * causes records `actorOf(subject)` as its `actor` and the subject's address as its `client`,
 * so the audit trail names people, robots and service instances — never just "proxy".
 */
export type Subject =
  | { readonly kind: 'anonymous'; readonly address: string }
  /** A person: an htpasswd user, or the subject of a token from a trusted issuer. */
  | UserSubject<'user'>
  /** A robot account (CI, automation): a user that is not a person. */
  | UserSubject<'robot'>
  /** A Shoal process holding a cluster identity (a client certificate or a service token). */
  | {
      readonly kind: 'service';
      readonly role: ServiceRole;
      /** The instance within its role: an origin's id, an agent's host name. */
      readonly name: string;
      readonly address: string;
    };

type UserSubject<K extends 'user' | 'robot'> = {
  readonly kind: K;
  readonly name: string;
  readonly groups: readonly string[];
  readonly address: string;
};

export const serviceRoles = [
  'proxy',
  'origin',
  'tracker',
  'build-index',
  'agent',
  'replicator',
  'console',
  'cli',
] as const;
export type ServiceRole = (typeof serviceRoles)[number];

/**
 * The event metadata `actor` for a subject: `user:alice`, `robot:ci`, `service:origin/1`,
 * `anonymous`. Stable: the audit trail and the console filter by it.
 */
export const actorOf = (subject: Subject): string => {
  switch (subject.kind) {
    case 'anonymous':
      return 'anonymous';
    case 'user':
    case 'robot':
      return `${subject.kind}:${subject.name}`;
    case 'service':
      return `service:${subject.role}/${subject.name}`;
  }
};

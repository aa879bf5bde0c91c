import { truncate } from '../oci/digest';
import { ShoalError } from '../shared/errors';
import type { Result } from '../shared/result';
import { fail, ok } from '../shared/result';

/**
 * What a caller may do to a repository:
 * - `pull`: read manifests, tags and blobs;
 * - `push`: create — upload blobs, push manifests, create a tag;
 * - `overwrite`: move an existing tag to another manifest (without it, tags are immutable);
 * - `delete`: delete tags, manifests and blobs.
 */
export const accessActions = ['pull', 'push', 'overwrite', 'delete'] as const;
export type AccessAction = (typeof accessActions)[number];

export const isAccessAction = (value: string): value is AccessAction =>
  (accessActions as readonly string[]).includes(value);

/**
 * A resource and actions as the Docker token protocol writes them: `scope` query parameters
 * (`repository:team/app:pull,push`, `registry:catalog:*`) and a token's `access` claim.
 * Actions are kept as written (`*` included); callers map them to {@link AccessAction}s.
 */
export type ResourceAccess = {
  readonly type: string;
  readonly name: string;
  readonly actions: readonly string[];
};

/**
 * Parses one scope: `<type>[(<class>)]:<name>:<actions>`. The name is everything between the
 * first and the last colon (a name may hold a registry's `host:port`); actions are
 * comma-separated. Anything else is refused.
 */
export const parseScope = (input: string): Result<ResourceAccess> => {
  const first = input.indexOf(':');
  const last = input.lastIndexOf(':');
  const type = input.slice(0, first).replace(/\([a-z0-9]+\)$/, '');
  const name = input.slice(first + 1, last);
  const actions = input
    .slice(last + 1)
    .split(',')
    .filter((a) => a !== '');
  if (
    first <= 0 ||
    last === first ||
    input.length > 1024 ||
    !/^[a-z]+$/.test(type) ||
    name === '' ||
    actions.some((a) => !/^([a-z]+|\*)$/.test(a))
  ) {
    return fail(
      new ShoalError('PARAMETER_INVALID', `invalid scope "${truncate(input)}"`, {
        detail: { scope: truncate(input) },
      }),
    );
  }
  return ok({ type, name, actions });
};

/** `repository:<name>:<actions>` (the form of `WWW-Authenticate` challenges). */
export const formatScope = (access: ResourceAccess): string =>
  `${access.type}:${access.name}:${access.actions.join(',')}`;

/**
 * The Shoal actions a token's (or a scope's) actions on a repository stand for. Docker
 * clients ask for `pull`, `push`, `delete` or `*`; Shoal's `overwrite` travels as itself, and
 * `*` means every action.
 */
export const actionsOf = (actions: readonly string[]): Set<AccessAction> => {
  if (actions.includes('*')) return new Set(accessActions);
  return new Set(actions.filter(isAccessAction));
};

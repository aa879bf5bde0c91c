import { ShoalError } from '../../../domain';

// A 401 says how to authenticate: `WWW-Authenticate`. The error carries its challenge to the
// error handlers (Problem Details and OCI), which add the header; clients see no difference
// between a challenge from a route and one from an authenticator.
const challenges = new WeakMap<object, string>();

/** `UNAUTHORIZED` (401) answered with `WWW-Authenticate: <challenge>`. */
export const unauthorized = (message: string, challenge: string): ShoalError => {
  const error = new ShoalError('UNAUTHORIZED', message);
  challenges.set(error, challenge);
  return error;
};

/** The challenge an error carries, if it is a 401 that has one. */
export const challengeOf = (error: unknown): string | undefined =>
  typeof error === 'object' && error !== null ? challenges.get(error) : undefined;

const quoted = (value: string) => `"${value.replace(/["\\]/g, '\\$&')}"`;

/**
 * A Docker token challenge: `Bearer realm="…",service="…"[,scope="…"][,error="…"]`. With a
 * scope, a client fetches a token for it at the realm and repeats the request.
 */
export const bearerChallenge = (params: {
  realm: string;
  service: string;
  scope?: string;
  error?: 'invalid_token' | 'insufficient_scope';
}): string =>
  [
    `Bearer realm=${quoted(params.realm)}`,
    `service=${quoted(params.service)}`,
    ...(params.scope !== undefined ? [`scope=${quoted(params.scope)}`] : []),
    ...(params.error !== undefined ? [`error=${quoted(params.error)}`] : []),
  ].join(',');

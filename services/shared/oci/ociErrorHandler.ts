import type { FastifyReply, FastifyRequest } from 'fastify';
import type { ErrorCode } from '../../../domain';
import { ShoalError, isShoalError } from '../../../domain';
import { describeError } from '../http';
import { challengeOf } from '../security/challenge';

/**
 * Shoal's codes as OCI Distribution error codes. Codes the spec names pass through; the
 * others map to the nearest spec code, or keep Shoal's name where the spec has none.
 */
const ociCodes: Partial<Record<ErrorCode, string>> = {
  TAG_UNKNOWN: 'MANIFEST_UNKNOWN',
  REFERENCE_INVALID: 'TAG_INVALID',
  POSITION_NOT_REACHED: 'UNAVAILABLE',
  SERVICE_UNAVAILABLE: 'UNAVAILABLE',
  STORAGE_UNAVAILABLE: 'UNAVAILABLE',
  LOG_UNAVAILABLE: 'UNAVAILABLE',
  LOG_CLOSED: 'UNAVAILABLE',
};

/**
 * Status codes the OCI API uses for a code, whatever Shoal's table says (today the same:
 * kept here so the OCI edge does not depend on the table staying so).
 */
const statusByCode: Partial<Record<ErrorCode, number>> = { RANGE_INVALID: 416 };

/** Status codes the OCI API uses where Shoal's table has another (per error instance). */
export type HttpOverride = { readonly status: number; readonly headers?: Record<string, string> };

const overrides = new WeakMap<object, HttpOverride>();

/** Marks an error to be answered with another status (413 for a manifest over the cap). */
export const withStatus = <E extends Error>(error: E, override: HttpOverride): E => {
  overrides.set(error, override);
  return error;
};

export const methodNotAllowed = (method: string, what: string) =>
  withStatus(new ShoalError('UNSUPPORTED', `${method} is not supported on ${what}`), {
    status: 405,
  });

/**
 * The `/v2/` error handler of the proxy and the agent: every error in the spec's JSON format
 * `{"errors":[{"code","message","detail"}]}`, never a 5xx message or stack. A failure the
 * client may retry (the log or a store unavailable, `Retry-After: 1`) is logged as a warning,
 * any other 5xx as an error.
 */
export const ociErrorHandler = (error: unknown, request: FastifyRequest, reply: FastifyReply) => {
  const described = describeError(error);
  const override = typeof error === 'object' && error !== null ? overrides.get(error) : undefined;
  const status =
    override?.status ??
    (isShoalError(error) ? statusByCode[error.code] : undefined) ??
    described.statusCode;
  if (status >= 500) {
    if (isShoalError(error) && error.retriable) request.log.warn({ err: error }, 'request failed');
    else request.log.error({ err: error }, 'request failed');
  }
  const code = isShoalError(error)
    ? (ociCodes[error.code] ?? error.code)
    : status >= 500
      ? 'UNKNOWN'
      : status === 413
        ? 'SIZE_INVALID'
        : 'UNSUPPORTED';
  const message = status >= 500 && code === 'UNKNOWN' ? 'internal error' : described.message;
  for (const [name, value] of Object.entries(override?.headers ?? {})) reply.header(name, value);
  if (isShoalError(error) && error.retriable) reply.header('Retry-After', '1');
  const challenge = challengeOf(error);
  if (challenge !== undefined) reply.header('WWW-Authenticate', challenge);
  const body = {
    errors: [
      { code, message, ...(described.detail !== undefined && { detail: described.detail }) },
    ],
  };
  return reply.code(status).type('application/json').send(JSON.stringify(body));
};

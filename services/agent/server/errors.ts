import type { FastifyReply, FastifyRequest } from 'fastify';
import type { ErrorCode } from '../../../domain';
import { isShoalError } from '../../../domain';
import { describeError } from '../../shared/http';

/** Shoal codes as OCI Distribution error codes (the rest pass through). */
const ociCodes: Partial<Record<ErrorCode, string>> = {
  TAG_UNKNOWN: 'MANIFEST_UNKNOWN',
  REFERENCE_INVALID: 'TAG_INVALID',
  SERVICE_UNAVAILABLE: 'UNAVAILABLE',
  STORAGE_UNAVAILABLE: 'UNAVAILABLE',
  POSITION_NOT_REACHED: 'UNAVAILABLE',
};

/** Status codes OCI clients expect where Shoal's table has another. */
const statusOverrides: Partial<Record<string, number>> = { RANGE_INVALID: 416 };

/** The agent's `/v2/` error handler: the spec's JSON errors, never a 5xx message. */
export const agentErrorHandler = (error: unknown, request: FastifyRequest, reply: FastifyReply) => {
  const described = describeError(error);
  const shoalCode = isShoalError(error) ? error.code : undefined;
  const status = (shoalCode && statusOverrides[shoalCode]) ?? described.statusCode;
  if (status >= 500) request.log.warn({ err: error }, 'request failed');
  const code =
    shoalCode !== undefined
      ? (ociCodes[shoalCode] ?? shoalCode)
      : status >= 500
        ? 'UNKNOWN'
        : 'UNSUPPORTED';
  if (isShoalError(error) && error.retriable) reply.header('Retry-After', '1');
  return reply
    .code(status)
    .type('application/json')
    .send(
      JSON.stringify({
        errors: [
          {
            code,
            message: described.message,
            ...(described.detail !== undefined && { detail: described.detail }),
          },
        ],
      }),
    );
};

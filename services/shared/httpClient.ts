import type { ErrorCode } from '../../domain';
import { ShoalError, errorCodes } from '../../domain';

/**
 * A small JSON client over fetch for Shoal's own APIs: translates Problem Details back into
 * `ShoalError`s with their codes, and connection failures into retriable `LOG_UNAVAILABLE`-
 * style `SERVICE_UNAVAILABLE` errors, with a timeout on every call.
 */
export const createJsonClient = (baseUrl: string, options: { timeoutMs?: number } = {}) => {
  const base = baseUrl.replace(/\/+$/, '');
  const timeoutMs = options.timeoutMs ?? 30_000;
  return async <T>(
    method: string,
    path: string,
    init: { body?: unknown; headers?: Record<string, string> } = {},
  ): Promise<{ body: T; headers: Headers; status: number }> => {
    let response: Response;
    try {
      response = await fetch(`${base}${path}`, {
        method,
        headers: {
          accept: 'application/json',
          ...(init.body !== undefined && { 'content-type': 'application/json' }),
          ...init.headers,
        },
        ...(init.body !== undefined && { body: JSON.stringify(init.body) }),
        signal: AbortSignal.timeout(timeoutMs),
      });
    } catch (error) {
      throw new ShoalError('SERVICE_UNAVAILABLE', `cannot reach ${base}: ${causeOf(error)}`, {
        cause: error,
      });
    }
    const text = await response.text();
    let body: unknown;
    try {
      body = text.length > 0 ? JSON.parse(text) : undefined;
    } catch {
      body = undefined;
    }
    if (!response.ok) {
      const problem = (body ?? {}) as { code?: string; detail?: string; extra?: unknown };
      const code = (
        problem.code && problem.code in errorCodes ? problem.code : 'INTERNAL'
      ) as ErrorCode;
      throw new ShoalError(
        code,
        problem.detail ?? `${method} ${path}: HTTP ${response.status}`,
        problem.extra ? { detail: problem.extra as Record<string, unknown> } : {},
      );
    }
    return { body: body as T, headers: response.headers, status: response.status };
  };
};

const causeOf = (error: unknown): string => {
  const cause = (error as { cause?: { code?: string; message?: string } }).cause;
  return cause?.code ?? cause?.message ?? (error as Error).message;
};

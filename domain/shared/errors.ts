/**
 * Shoal's one error type. Every failure that crosses a layer is a `ShoalError` with a `code`
 * from the table below; the HTTP edge maps codes to status codes and to the OCI error format,
 * callers decide on retries by `retriable`, and vendor errors are translated at the adapter edge.
 */
export const errorCodes = {
  // Input grammar (OCI distribution spec names where one exists).
  NAME_INVALID: { statusCode: 400, retriable: false },
  TAG_INVALID: { statusCode: 400, retriable: false },
  DIGEST_INVALID: { statusCode: 400, retriable: false },
  REFERENCE_INVALID: { statusCode: 400, retriable: false },
  POSITION_INVALID: { statusCode: 400, retriable: false },
  TIME_INVALID: { statusCode: 400, retriable: false },
  EVENT_INVALID: { statusCode: 400, retriable: false },
  CONFIG_INVALID: { statusCode: 400, retriable: false },
  PARAMETER_INVALID: { statusCode: 400, retriable: false },
  // Blobs and uploads (OCI distribution spec codes).
  BLOB_UNKNOWN: { statusCode: 404, retriable: false },
  BLOB_UPLOAD_UNKNOWN: { statusCode: 404, retriable: false },
  BLOB_UPLOAD_INVALID: { statusCode: 400, retriable: false },
  RANGE_INVALID: { statusCode: 416, retriable: false },
  SIZE_INVALID: { statusCode: 400, retriable: false },
  /** A blob store backend cannot be reached or refuses a write (disk full, permissions). */
  STORAGE_UNAVAILABLE: { statusCode: 503, retriable: true },
  /** A write would take the free disk space below the configured watermark (507). */
  STORAGE_FULL: { statusCode: 507, retriable: true },
  MANIFEST_UNKNOWN: { statusCode: 404, retriable: false },
  MANIFEST_INVALID: { statusCode: 400, retriable: false },
  MANIFEST_BLOB_UNKNOWN: { statusCode: 400, retriable: false },
  UNSUPPORTED: { statusCode: 405, retriable: false },
  /** No credentials, or credentials that do not check out (OCI `UNAUTHORIZED`). */
  UNAUTHORIZED: { statusCode: 401, retriable: false },
  /** Authenticated, but not allowed to do this (OCI `DENIED`). */
  DENIED: { statusCode: 403, retriable: false },
  // Lookups.
  TAG_UNKNOWN: { statusCode: 404, retriable: false },
  NAME_UNKNOWN: { statusCode: 404, retriable: false },
  PROJECTION_UNKNOWN: { statusCode: 404, retriable: false },
  // The log.
  WRONG_EXPECTED_VERSION: { statusCode: 409, retriable: false },
  LOG_CLOSED: { statusCode: 503, retriable: false },
  LOG_UNAVAILABLE: { statusCode: 503, retriable: true },
  LOG_CORRUPT: { statusCode: 500, retriable: false },
  DATA_DIR_INVALID: { statusCode: 500, retriable: false },
  /** Another process runs on the data directory in a way that excludes this one. */
  DATA_DIR_IN_USE: { statusCode: 409, retriable: false },
  /** A listen address is taken (EADDRINUSE). */
  PORT_IN_USE: { statusCode: 409, retriable: false },
  SERVICE_UNAVAILABLE: { statusCode: 503, retriable: true },
  // Read-your-writes.
  POSITION_NOT_REACHED: { statusCode: 503, retriable: true },
  // Anything else.
  INTERNAL: { statusCode: 500, retriable: false },
} as const satisfies Record<string, { statusCode: number; retriable: boolean }>;

export type ErrorCode = keyof typeof errorCodes;

export class ShoalError extends Error {
  readonly code: ErrorCode;
  readonly statusCode: number;
  readonly retriable: boolean;
  /** Machine-readable detail, safe to show a client (field names, limits, positions). */
  readonly detail: Readonly<Record<string, unknown>> | undefined;

  constructor(
    code: ErrorCode,
    message: string,
    options: { detail?: Record<string, unknown>; cause?: unknown; retriable?: boolean } = {},
  ) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'ShoalError';
    this.code = code;
    this.statusCode = errorCodes[code].statusCode;
    this.retriable = options.retriable ?? errorCodes[code].retriable;
    this.detail = options.detail;
  }
}

/** Guard by code, not only by class: errors may cross module copies or processes. */
export const isShoalError = (error: unknown, code?: ErrorCode): error is ShoalError =>
  typeof error === 'object' &&
  error !== null &&
  (error as { name?: unknown }).name === 'ShoalError' &&
  typeof (error as { code?: unknown }).code === 'string' &&
  (code === undefined || (error as { code: string }).code === code);

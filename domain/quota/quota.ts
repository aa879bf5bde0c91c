import { truncate } from '../oci/digest';
import { parseRepoName } from '../oci/repoName';
import { ShoalError } from '../shared/errors';
import type { Result } from '../shared/result';
import { fail, ok } from '../shared/result';

/**
 * The namespaces a repository belongs to, widest first: `team/app/web` is in `team`,
 * `team/app` and `team/app/web`. A quota on any of them counts the repository's blobs.
 */
export const namespacesOf = (repo: string): string[] => {
  const parts = repo.split('/');
  return parts.map((_, i) => parts.slice(0, i + 1).join('/'));
};

const units: Readonly<Record<string, number>> = {
  '': 1,
  b: 1,
  k: 1e3,
  kb: 1e3,
  m: 1e6,
  mb: 1e6,
  g: 1e9,
  gb: 1e9,
  t: 1e12,
  tb: 1e12,
  kib: 2 ** 10,
  mib: 2 ** 20,
  gib: 2 ** 30,
  tib: 2 ** 40,
};

/** `10GiB`, `500MB`, `1.5TiB`, `1024` → bytes (an integer). */
export const parseBytes = (input: string): Result<number> => {
  const match = /^\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*$/.exec(input);
  const unit = units[(match?.[2] ?? '').toLowerCase()];
  if (match === null || unit === undefined) {
    return fail(
      new ShoalError(
        'PARAMETER_INVALID',
        `invalid size "${truncate(input)}": want e.g. 500MB, 10GiB, 1TiB or bytes`,
      ),
    );
  }
  const bytes = Math.round(Number(match[1]) * unit);
  if (!Number.isSafeInteger(bytes)) {
    return fail(new ShoalError('PARAMETER_INVALID', `size "${truncate(input)}" is too large`));
  }
  return ok(bytes);
};

/** Bytes for people: `1.5 GiB`, `300 MiB`, `12 B`. */
export const formatBytes = (bytes: number): string => {
  const steps = ['B', 'KiB', 'MiB', 'GiB', 'TiB', 'PiB'];
  let value = bytes;
  let i = 0;
  while (Math.abs(value) >= 1024 && i < steps.length - 1) {
    value /= 1024;
    i += 1;
  }
  const shown =
    i === 0 || value >= 100 ? Math.round(value).toString() : value.toFixed(1).replace(/\.0$/, '');
  return `${shown} ${steps[i]}`;
};

/** A quota namespace: a repository name or a prefix of one (same grammar). */
export const parseNamespace = (input: string): Result<string> => {
  const parsed = parseRepoName(input);
  return parsed.ok
    ? ok(parsed.value)
    : fail(
        new ShoalError('PARAMETER_INVALID', `invalid namespace "${truncate(input)}"`, {
          detail: { namespace: truncate(input) },
        }),
      );
};

/** The error a push over quota fails with (OCI `DENIED`), naming the quota. */
export const quotaExceeded = (
  namespace: string,
  quota: { bytes: number; used: number; adding: number },
): ShoalError =>
  new ShoalError(
    'DENIED',
    `quota of namespace ${namespace} exceeded: ${formatBytes(quota.used)} used of ` +
      `${formatBytes(quota.bytes)}, this push adds ${formatBytes(quota.adding)}`,
    { detail: { namespace, quota: quota.bytes, used: quota.used, adding: quota.adding } },
  );

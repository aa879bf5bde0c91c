import { ShoalError } from '../shared/errors';
import type { Result } from '../shared/result';
import { fail, ok } from '../shared/result';

/** A content digest, `algorithm:hex`, validated (OCI image-spec "Digests"). */
export type Digest = string & { readonly __brand: 'Digest' };

export type DigestAlgorithm = 'sha256' | 'sha512';

/** Hex length per supported algorithm; the registered algorithms of the OCI image spec. */
export const digestHexLength: Readonly<Record<DigestAlgorithm, number>> = {
  sha256: 64,
  sha512: 128,
};

// The general grammar from the image spec, used to tell "malformed" from "unsupported".
const digestGrammar = /^[a-z0-9]+(?:[+._-][a-z0-9]+)*:[a-zA-Z0-9=_-]+$/;

export const parseDigest = (input: string): Result<Digest> => {
  if (!digestGrammar.test(input)) {
    return fail(
      new ShoalError('DIGEST_INVALID', `invalid digest "${truncate(input)}": want algorithm:hex`, {
        detail: { digest: truncate(input) },
      }),
    );
  }
  const colon = input.indexOf(':');
  const algorithm = input.slice(0, colon);
  const hex = input.slice(colon + 1);
  if (algorithm !== 'sha256' && algorithm !== 'sha512') {
    return fail(
      new ShoalError('DIGEST_INVALID', `unsupported digest algorithm "${algorithm}"`, {
        detail: { digest: truncate(input), supported: Object.keys(digestHexLength) },
      }),
    );
  }
  const want = digestHexLength[algorithm];
  if (hex.length !== want || !/^[a-f0-9]+$/.test(hex)) {
    return fail(
      new ShoalError(
        'DIGEST_INVALID',
        `invalid ${algorithm} digest: want ${want} lowercase hex characters`,
        { detail: { digest: truncate(input) } },
      ),
    );
  }
  return ok(input as Digest);
};

export const digestAlgorithm = (digest: Digest): DigestAlgorithm =>
  digest.slice(0, digest.indexOf(':')) as DigestAlgorithm;

export const digestHex = (digest: Digest): string => digest.slice(digest.indexOf(':') + 1);

/** Keeps hostile input out of error messages and logs. */
export const truncate = (input: string, max = 80): string =>
  input.length <= max ? input : `${input.slice(0, max)}…`;

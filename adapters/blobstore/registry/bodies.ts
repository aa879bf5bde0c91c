import { createHash } from 'node:crypto';
import type { Readable } from 'node:stream';
import { Transform } from 'node:stream';
import type { Digest } from '../../../domain';
import { ShoalError, digestAlgorithm, isShoalError } from '../../../domain';
import type { ResponseHeaders } from '../../../kit/http/transport';
import { headerOf } from '../../../kit/http/transport';

// What the registry backend does to the bodies it reads from the upstream.

/** A manifest's media type: the `Content-Type` sent, else its `mediaType` field, else ''. */
export const mediaTypeOf = (headers: ResponseHeaders, body: Buffer): string => {
  const header = (headerOf(headers, 'content-type') ?? '').split(';')[0]?.trim() ?? '';
  if (header !== '' && header !== 'application/octet-stream') return header;
  try {
    const parsed = JSON.parse(body.toString('utf8')) as { mediaType?: unknown };
    return typeof parsed.mediaType === 'string' ? parsed.mediaType : header;
  } catch {
    return header;
  }
};

/**
 * Pipes an upstream body into `through`, which the caller reads. A failing connection fails
 * `through` with `STORAGE_UNAVAILABLE`; a caller that destroys `through` closes the connection.
 */
export const relay = (body: Readable, through: Transform, label: string): Transform => {
  body.on('error', (error) =>
    through.destroy(
      isShoalError(error)
        ? error
        : new ShoalError(
            'STORAGE_UNAVAILABLE',
            `${label}: the upstream connection failed mid-body: ${
              (error as { code?: string }).code ?? error.message
            }`,
            { cause: error },
          ),
    ),
  );
  through.on('close', () => {
    if (!body.readableEnded) body.destroy();
  });
  body.pipe(through);
  return through;
};

/**
 * Hashes what passes and holds back the latest chunk: the last one is released only when
 * the whole body has `size` bytes hashing to `digest`, else the stream fails with
 * `DIGEST_INVALID` and the bytes held back are dropped.
 */
export const verifying = (digest: Digest, size: number, where: string): Transform => {
  const algorithm = digestAlgorithm(digest);
  const hash = createHash(algorithm);
  let held: Buffer | undefined;
  let received = 0;
  return new Transform({
    transform(chunk: Buffer, _encoding, done) {
      if (chunk.length === 0) return done();
      received += chunk.length;
      if (received > size) {
        return done(
          new ShoalError('DIGEST_INVALID', `${where}: ${digest} is longer than ${size} bytes`),
        );
      }
      hash.update(chunk);
      const release = held;
      held = chunk;
      done(null, release);
    },
    flush(done) {
      const actual = `${algorithm}:${hash.digest('hex')}`;
      if (received !== size || actual !== digest) {
        done(
          new ShoalError(
            'DIGEST_INVALID',
            `${where}: the upstream sent ${received} bytes hashing to ${actual} for ${digest} ` +
              `(${size} bytes announced)`,
            { detail: { digest, digestReceived: actual, size, received } },
          ),
        );
        return;
      }
      if (held !== undefined) this.push(held);
      done();
    },
  });
};

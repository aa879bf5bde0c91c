import { Transform } from 'node:stream';
import type { RateLimiter } from './tokenBucket';

/**
 * A Transform that passes bytes through at the limiter's rate, in chunks of at most
 * `chunkSize` (default 64 KiB) so that it takes turns with the limiter's other users.
 * The limiter's own queue provides the fairness; this only slices and waits.
 */
export const createThrottle = (
  limiter: RateLimiter,
  options: { chunkSize?: number } = {},
): Transform => {
  const chunkSize = options.chunkSize ?? 64 * 1024;
  const abort = new AbortController();
  return new Transform({
    transform(chunk: Buffer, _encoding, callback) {
      void (async () => {
        for (let at = 0; at < chunk.length; at += chunkSize) {
          const slice = chunk.subarray(at, at + chunkSize);
          if (!limiter.tryTake(slice.length)) await limiter.take(slice.length, abort.signal);
          this.push(slice);
        }
      })().then(() => callback(), callback);
    },
    destroy(error, callback) {
      abort.abort();
      callback(error);
    },
  });
};

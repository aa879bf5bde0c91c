import type { DuplexOptions } from 'node:stream';
import { Duplex } from 'node:stream';

/**
 * One end of an in-memory stream pair. Writes become the other end's reads, and a write is
 * not acknowledged until the other end's reader wants more, so back-pressure propagates as
 * it does over TCP (with much smaller buffers: the high-water marks given).
 */
class PairEnd extends Duplex {
  other!: PairEnd;
  /** The other end's write, held until this end's reader asks for more. */
  private blockedWrite: ((error?: Error | null) => void) | undefined;

  override _write(chunk: Buffer, _encoding: BufferEncoding, done: (error?: Error | null) => void) {
    // Delivered on a later turn of the event loop, as a socket would: a write never runs the
    // other end's handlers inside the writer's call stack.
    setImmediate(() => {
      const other = this.other;
      if (other.destroyed || other.readableEnded) {
        done(new Error('write to a closed pair end'));
        return;
      }
      if (other.push(chunk)) done();
      else other.blockedWrite = done;
    });
  }

  override _read(): void {
    const resume = this.blockedWrite;
    this.blockedWrite = undefined;
    resume?.();
  }

  override _final(done: (error?: Error | null) => void): void {
    setImmediate(() => {
      if (!this.other.destroyed && !this.other.readableEnded) this.other.push(null);
      done();
    });
  }

  override _destroy(error: Error | null, done: (error: Error | null) => void): void {
    // Like a reset connection: the other end sees the stream end.
    const other = this.other;
    if (!other.destroyed && !other.readableEnded) other.push(null);
    const blocked = this.blockedWrite;
    this.blockedWrite = undefined;
    blocked?.(new Error('pair end destroyed'));
    done(error);
  }
}

/** Two connected in-memory Duplex ends, for tests of anything that talks over a socket. */
export const duplexPair = (options: { highWaterMark?: number } = {}): [Duplex, Duplex] => {
  const settings: DuplexOptions = { allowHalfOpen: false, highWaterMark: options.highWaterMark };
  const a = new PairEnd(settings);
  const b = new PairEnd(settings);
  a.other = b;
  b.other = a;
  return [a, b];
};

import type { ServerResponse } from 'node:http';
import { open } from 'node:fs/promises';
import { sharedPool } from '../../../kit/buffers';

/**
 * Bytes per read of a blob file being served: large enough that a read and a socket write
 * per chunk cost little, small enough that a few in flight per response stay cheap.
 */
const chunkLength = 256 * 1024;
const chunks = sharedPool(chunkLength);
/** Chunks one response may have read ahead of the socket. */
const readAhead = 4;

/**
 * Writes bytes `[start, end]` of a file as a response body (the status and headers already
 * set on `response`), through pooled buffers: `fs.createReadStream` allocates a new buffer
 * per 64 KiB, and serving a blob at hundreds of MB/s made V8 collect the whole heap every
 * 200 ms. A buffer goes back to the pool when the socket's write callback has run (the
 * bytes are flushed, or the write failed), never before; a response destroyed mid-way just
 * leaves its last buffers to the garbage collector. Resolves when the body is written or the
 * response is gone; rejects when the file cannot be read (the response is then destroyed).
 */
export const writeFileRange = async (
  response: ServerResponse,
  path: string,
  start: number,
  end: number,
): Promise<void> => {
  const file = await open(path, 'r');
  let pending = 0;
  let wake: (() => void) | undefined;
  const settled = () => {
    const resume = wake;
    wake = undefined;
    resume?.();
  };
  response.on('close', settled);
  response.on('drain', settled);
  try {
    for (let position = start; position <= end && !response.destroyed;) {
      const buffer = chunks.take();
      const { bytesRead } = await file.read(
        buffer,
        0,
        Math.min(chunkLength, end + 1 - position),
        position,
      );
      if (bytesRead === 0) {
        chunks.give(buffer);
        throw new Error(`${path} is shorter than ${end + 1} bytes`);
      }
      position += bytesRead;
      pending += 1;
      const flushed = response.write(buffer.subarray(0, bytesRead), () => {
        pending -= 1;
        chunks.give(buffer);
        settled();
      });
      // Wait for the socket: after back-pressure until it drains, and while enough chunks
      // are in flight (each wake-up is a drain, a write callback or the close).
      const blocked = () =>
        !response.destroyed && ((!flushed && response.writableNeedDrain) || pending >= readAhead);
      while (blocked()) await new Promise<void>((resolve) => (wake = resolve));
    }
    if (!response.destroyed) response.end();
  } catch (error) {
    response.destroy(error as Error);
    throw error;
  } finally {
    response.off('close', settled);
    response.off('drain', settled);
    await file.close();
  }
};

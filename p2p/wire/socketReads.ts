import { Socket } from 'node:net';
import type { Duplex } from 'node:stream';

/*
 * Socket reads into one reused buffer. Node allocates a fresh 64 KiB buffer for every read
 * of a socket, and at tens of MB/s that external memory keeps V8 running full collections
 * of the heap (a fifth of an agent's CPU in the swarm benchmark). Node's `onread` option
 * reads into a buffer of the caller's instead, but only for sockets the caller constructs;
 * a server's accepted sockets get the same treatment here through the three symbols `onread`
 * sets, found on a probe socket. Where they are missing (another Node), reads fall back to
 * 'data' events.
 */

type Internals = { readonly buffer: symbol; readonly callback: symbol; readonly generator: symbol };

let internals: Internals | null | undefined;

const probe = (): Internals | null => {
  try {
    const onread = { buffer: Buffer.alloc(1), callback: () => true };
    const socket = new Socket({ onread } as ConstructorParameters<typeof Socket>[0]);
    const symbols = Object.getOwnPropertySymbols(socket);
    socket.destroy();
    const find = (name: string) => symbols.find((s) => s.description === name);
    const [buffer, callback, generator] = ['kBuffer', 'kBufferCb', 'kBufferGen'].map(find);
    if (buffer === undefined || callback === undefined || generator === undefined) return null;
    return { buffer, callback, generator };
  } catch {
    return null;
  }
};

/** Bytes one read may take: reads on a busy loopback socket fill it. */
const readLength = 256 * 1024;
let shared: Buffer | undefined;

type UserBufferHandle = { useUserBuffer?: (buffer: Uint8Array) => void };

/**
 * Delivers a stream's bytes to `onChunk` as they are read. For a connected TCP socket they
 * are read into one buffer shared by every socket of the process (libuv reads one socket at
 * a time, and `onChunk` runs before the next read): `onChunk` must copy what it keeps
 * before it returns. Other streams deliver their 'data' chunks. Either way the stream stays
 * in flowing mode, so 'end' and 'close' are emitted as usual, and `pause()`/`resume()` stop
 * and restart reading.
 */
export const readInto = (stream: Duplex, onChunk: (chunk: Buffer) => void): void => {
  internals ??= probe();
  const handle = (stream as unknown as { _handle?: UserBufferHandle })._handle;
  if (
    internals === null ||
    !(stream instanceof Socket) ||
    stream.connecting ||
    typeof handle?.useUserBuffer !== 'function'
  ) {
    stream.on('data', onChunk);
    return;
  }
  // Bytes already read into the stream's own buffer come first.
  for (let chunk = stream.read() as Buffer | null; chunk !== null; chunk = stream.read()) {
    onChunk(chunk);
  }
  shared ??= Buffer.allocUnsafeSlow(readLength);
  const fields = stream as unknown as Record<symbol, unknown>;
  fields[internals.buffer] = shared;
  fields[internals.generator] = null;
  fields[internals.callback] = (nread: number, buffer: Buffer) => {
    onChunk(buffer.subarray(0, nread));
    return true;
  };
  handle.useUserBuffer(shared);
  stream.resume();
};

import { randomBytes } from 'node:crypto';
import { once } from 'node:events';
import type { AddressInfo, Socket } from 'node:net';
import { connect, createServer } from 'node:net';
import { PassThrough } from 'node:stream';
import { readInto } from './socketReads';

/** A connected TCP pair on loopback: the dialed socket and the accepted one. */
const tcpPair = async () => {
  const server = createServer();
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const accepted = once(server, 'connection') as Promise<[Socket]>;
  const dialed = connect((server.address() as AddressInfo).port, '127.0.0.1');
  await once(dialed, 'connect');
  const [socket] = await accepted;
  server.close();
  return { dialed, accepted: socket };
};

describe('readInto', () => {
  it.each(['accepted', 'dialed'] as const)(
    'delivers every byte of a %s socket in order, from one reused buffer',
    async (side) => {
      const { dialed, accepted } = await tcpPair();
      const [reader, writer] = side === 'accepted' ? [accepted, dialed] : [dialed, accepted];
      const sent = randomBytes(4 * 1024 * 1024);
      const received: Buffer[] = [];
      const owners = new Set<ArrayBufferLike>();
      readInto(reader, (chunk) => {
        owners.add(chunk.buffer);
        received.push(Buffer.from(chunk)); // a copy: the chunk is reused after this call
      });
      const ended = once(reader, 'end');
      for (let at = 0; at < sent.length; at += 100_000)
        writer.write(sent.subarray(at, at + 100_000));
      writer.end();
      await ended;
      expect(Buffer.concat(received).equals(sent)).toBe(true);
      expect(owners.size).toBe(1);
      reader.destroy();
    },
  );

  it('stops reading while paused and goes on after resume', async () => {
    const { dialed, accepted } = await tcpPair();
    let bytes = 0;
    readInto(accepted, (chunk) => (bytes += chunk.length));
    dialed.write(Buffer.alloc(1000));
    while (bytes < 1000) await new Promise((resolve) => setTimeout(resolve, 5));
    accepted.pause();
    dialed.write(Buffer.alloc(1000));
    await new Promise((resolve) => setTimeout(resolve, 50));
    expect(bytes).toBe(1000);
    accepted.resume();
    while (bytes < 2000) await new Promise((resolve) => setTimeout(resolve, 5));
    dialed.destroy();
    accepted.destroy();
  });

  it('falls back to data events on other streams', async () => {
    const stream = new PassThrough();
    const received: Buffer[] = [];
    readInto(stream, (chunk) => received.push(chunk));
    stream.end(Buffer.from('abc'));
    await once(stream, 'end');
    expect(Buffer.concat(received).toString()).toBe('abc');
  });
});

import { randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import type { IncomingMessage, Server } from 'node:http';
import { createServer, get } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { writeFileRange } from './fileResponse';

describe('writeFileRange', () => {
  let dir: string;
  let server: Server;
  let served: Promise<void>[];
  const content = randomBytes(3 * 1024 * 1024 + 17);

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'shoal-file-response-'));
    const path = join(dir, 'blob');
    await writeFile(path, content);
    served = [];
    server = createServer((request, response) => {
      const [start, end] = (request.url ?? '/0-0').slice(1).split('-').map(Number);
      response.writeHead(200, { 'content-length': String((end ?? 0) - (start ?? 0) + 1) });
      served.push(writeFileRange(response, path, start ?? 0, end ?? 0));
    });
    server.listen(0, '127.0.0.1');
    await once(server, 'listening');
  });

  afterAll(async () => {
    server.close();
    await rm(dir, { recursive: true, force: true });
  });

  const fetchRange = (range: string) =>
    new Promise<IncomingMessage>((resolve, reject) => {
      const { port } = server.address() as AddressInfo;
      get(`http://127.0.0.1:${port}/${range}`, resolve).once('error', reject);
    });

  it('writes the range, whole or in part, to a slow reader', async () => {
    for (const [start, end] of [
      [0, content.length - 1],
      [1000, 1_300_000],
      [content.length - 1, content.length - 1],
    ] as const) {
      const response = await fetchRange(`${start}-${end}`);
      const parts: Buffer[] = [];
      for await (const chunk of response) {
        parts.push(chunk as Buffer);
        await new Promise((resolve) => setImmediate(resolve));
      }
      expect(Buffer.concat(parts).equals(content.subarray(start, end + 1))).toBe(true);
    }
    await Promise.all(served);
  });

  it('stops when the client goes away mid-body', async () => {
    const before = served.length;
    const response = await fetchRange(`0-${content.length - 1}`);
    await once(response, 'data');
    response.destroy();
    await expect(served[before]).resolves.toBeUndefined();
  });
});

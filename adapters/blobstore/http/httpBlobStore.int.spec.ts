import { execFileSync } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import type { Server, Socket } from 'node:net';
import { createServer } from 'node:net';
import { createServer as createHttpServer } from 'node:http';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import type { Digest } from '../../../domain';
import { blobObjectName } from '../../../domain';
import { describeBlobStoreContract } from '../../../test/contracts/blobStoreContract';
import { createHttpBlobStore } from './httpBlobStore';
import { drain } from '../../../test/fixtures/streams';
import { codeOf } from '../../../test/fixtures/errors';

// The BlobStore contract against a real nginx (test/services/http.sh: WebDAV PUT/DELETE, JSON
// directory index). CI exports HTTP_BACKEND_URL; run alone, this spec starts nginx itself.
const script = join(__dirname, '../../../test/services/http.sh');
const service = (command: 'start' | 'stop'): string =>
  execFileSync('bash', [script, command], {
    encoding: 'utf8',
    stdio: ['ignore', 'pipe', 'inherit'],
    timeout: 600_000,
  });

let base = process.env.HTTP_BACKEND_URL ?? '';
beforeAll(() => {
  if (base !== '') return;
  base = /^HTTP_BACKEND_URL=(.+)$/m.exec(service('start'))?.[1] ?? '';
  if (base === '') throw new Error('test/services/http.sh start printed no HTTP_BACKEND_URL');
}, 600_000);

/** A fresh directory on the server; removing it (WebDAV DELETE of a collection) is cleanup. */
const freshDir = () => {
  const dir = `${base}/t-${randomBytes(6).toString('hex')}/`;
  return { dir, cleanup: async () => void (await fetch(dir, { method: 'DELETE' })) };
};

/** Writes an object through nginx directly, as another tool would. */
const putDirect = async (url: string, bytes: Buffer) => {
  const res = await fetch(url, { method: 'PUT', body: bytes });
  expect([201, 204]).toContain(res.status);
};

describeBlobStoreContract('http (nginx, listUrl)', async () => {
  const { dir, cleanup } = freshDir();
  const store = createHttpBlobStore({ urlTemplate: `${dir}{name}`, listUrl: dir, write: true });
  return { store, cleanup };
});

describeBlobStoreContract(
  'http (nginx, no listUrl)',
  async () => {
    const { dir, cleanup } = freshDir();
    return { store: createHttpBlobStore({ urlTemplate: `${dir}{name}`, write: true }), cleanup };
  },
  { capabilities: { list: false } },
);

/** A local TCP server for fault injection; `port` once listening, `close()` to end it. */
const faultServer = async (onConnection: (socket: Socket) => void) => {
  const sockets = new Set<Socket>();
  const server: Server = createServer((socket) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
    socket.on('error', () => undefined);
    onConnection(socket);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as { port: number }).port;
  return {
    url: `http://127.0.0.1:${port}`,
    close: async () => {
      for (const socket of sockets) socket.destroy();
      await new Promise((resolve) => server.close(resolve));
    },
  };
};

describe('http BlobStore specifics', () => {
  let dir: string;
  let cleanup: () => Promise<void>;
  beforeEach(() => {
    ({ dir, cleanup } = freshDir());
  });
  afterEach(async () => cleanup());

  it('read-only: refuses put and delete with UNSUPPORTED, reads what nginx holds', async () => {
    const store = createHttpBlobStore({ urlTemplate: `${dir}{name}` });
    expect(store.readOnly).toBe(true);
    const content = randomBytes(5000);
    await putDirect(`${dir}a/b`, content);
    await expect(store.stat('a/b')).resolves.toEqual({ size: 5000 });
    expect((await drain((await store.get('a/b')).stream)).equals(content)).toBe(true);
    const range = await store.get('a/b', { start: 10, end: 19 });
    expect(range).toMatchObject({ size: 5000, start: 10, end: 19 });
    expect((await drain(range.stream)).equals(content.subarray(10, 20))).toBe(true);
    expect(await codeOf(store.put('a/b', Readable.from([Buffer.from('x')])))).toBe('UNSUPPORTED');
    expect(await codeOf(store.put('a/c', Readable.from([Buffer.from('x')])))).toBe('UNSUPPORTED');
    expect(await codeOf(store.delete('a/b'))).toBe('UNSUPPORTED');
    expect(await codeOf(drain(store.list()))).toBe('UNSUPPORTED');
    await expect(store.stat('a/c')).resolves.toBeUndefined();
    // A directory is no object.
    await expect(store.stat('a')).resolves.toBeUndefined();
    expect(await codeOf(store.get('a'))).toBe('BLOB_UNKNOWN');
    expect((await drain((await store.get('a/b')).stream)).equals(content)).toBe(true);
  });

  it('fills {algorithm} and {hex} from blob object names', async () => {
    const content = randomBytes(100);
    const hex = createHash('sha256').update(content).digest('hex');
    await putDirect(`${dir}by-digest/sha256/${hex}`, content);
    const store = createHttpBlobStore({ urlTemplate: `${dir}by-digest/{algorithm}/{hex}` });
    const name = blobObjectName(`sha256:${hex}` as Digest, 'cluster-a/');
    expect((await drain((await store.get(name)).stream)).equals(content)).toBe(true);
    expect(await codeOf(store.stat('not/a/blob/name'))).toBe('PARAMETER_INVALID');
  });

  it('sends the configured headers', async () => {
    const seen: (string | undefined)[] = [];
    const server = createHttpServer((req, res) => {
      seen.push(req.headers.authorization);
      res.writeHead(404).end();
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const { port } = server.address() as { port: number };
    try {
      const store = createHttpBlobStore({
        urlTemplate: `http://127.0.0.1:${port}/{name}`,
        headers: { Authorization: 'Bearer t0ken' },
      });
      await expect(store.stat('x')).resolves.toBeUndefined();
      expect(seen).toEqual(['Bearer t0ken']);
    } finally {
      server.closeAllConnections();
      await new Promise((resolve) => server.close(resolve));
    }
  });

  it('retries 5xx for reads, up to maxAttempts, then answers STORAGE_UNAVAILABLE', async () => {
    let hits = 0;
    let failFirst = 2;
    const server = createHttpServer((req, res) => {
      hits++;
      if (failFirst-- > 0) res.writeHead(503).end();
      else res.writeHead(200, { 'content-length': 3 }).end('abc');
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const { port } = server.address() as { port: number };
    try {
      const store = createHttpBlobStore({
        urlTemplate: `http://127.0.0.1:${port}/{name}`,
        maxAttempts: 3,
      });
      expect((await drain((await store.get('x')).stream)).toString()).toBe('abc');
      expect(hits).toBe(3);
      hits = 0;
      failFirst = 10;
      expect(await codeOf(store.stat('x'))).toBe('STORAGE_UNAVAILABLE');
      expect(hits).toBe(3);
    } finally {
      server.closeAllConnections();
      await new Promise((resolve) => server.close(resolve));
    }
  });

  it('answers STORAGE_UNAVAILABLE while nginx is stopped, and works once it is back', async () => {
    const store = createHttpBlobStore({ urlTemplate: `${dir}{name}`, write: true });
    await store.put('kept', Readable.from([Buffer.from('kept')]));
    service('stop');
    try {
      const started = Date.now();
      const get = store.get('kept').catch((error: unknown) => error);
      expect(await get).toMatchObject({
        code: 'STORAGE_UNAVAILABLE',
        message: expect.stringContaining(`${dir}kept`),
      });
      // Three attempts: two backoff waits of 50-100 ms and 100-200 ms.
      expect(Date.now() - started).toBeGreaterThanOrEqual(150);
      expect(await codeOf(store.stat('kept'))).toBe('STORAGE_UNAVAILABLE');
      expect(await codeOf(store.put('x', Readable.from([Buffer.from('x')])))).toBe(
        'STORAGE_UNAVAILABLE',
      );
      expect(await codeOf(store.delete('kept'))).toBe('STORAGE_UNAVAILABLE');
    } finally {
      service('start');
    }
    expect((await drain((await store.get('kept')).stream)).toString()).toBe('kept');
  });

  it('times out a server that never answers, and one that stalls mid-body', async () => {
    let connections = 0;
    const silent = await faultServer(() => connections++);
    try {
      const store = createHttpBlobStore({
        urlTemplate: `${silent.url}/{name}`,
        timeoutMs: 200,
        maxAttempts: 2,
      });
      const started = Date.now();
      expect(await codeOf(store.stat('x'))).toBe('STORAGE_UNAVAILABLE');
      expect(connections).toBe(2);
      expect(Date.now() - started).toBeGreaterThanOrEqual(400);
    } finally {
      await silent.close();
    }

    connections = 0;
    const stalling = await faultServer((socket) => {
      connections++;
      socket.once('data', () =>
        socket.write('HTTP/1.1 200 OK\r\ncontent-length: 1000\r\n\r\n' + 'x'.repeat(10)),
      );
    });
    try {
      const store = createHttpBlobStore({ urlTemplate: `${stalling.url}/{name}`, timeoutMs: 200 });
      const read = await store.get('x');
      expect(await codeOf(drain(read.stream))).toBe('STORAGE_UNAVAILABLE');
      // Bytes were handed out: never retried.
      expect(connections).toBe(1);
    } finally {
      await stalling.close();
    }
  });

  it('drops the connection when the reader destroys the stream', async () => {
    let closed = false;
    const endless = await faultServer((socket) => {
      socket.once('data', () => {
        socket.write('HTTP/1.1 200 OK\r\ncontent-length: 100000000\r\n\r\n');
        const pump = () => {
          while (!socket.destroyed && socket.write(Buffer.alloc(64 * 1024)));
        };
        socket.on('drain', pump);
        pump();
      });
      socket.on('close', () => (closed = true));
    });
    try {
      const store = createHttpBlobStore({ urlTemplate: `${endless.url}/{name}` });
      const read = await store.get('x');
      const stream = read.stream as Readable;
      await new Promise((resolve) => stream.once('data', resolve));
      stream.destroy();
      const deadline = Date.now() + 2000;
      while (!closed && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
      expect(closed).toBe(true);
    } finally {
      await endless.close();
    }
  });

  it('aborts a put whose body fails, leaving nginx nothing', async () => {
    const store = createHttpBlobStore({ urlTemplate: `${dir}{name}`, write: true });
    const failing = Readable.from(
      (async function* () {
        yield randomBytes(1024 * 1024);
        throw new Error('client went away');
      })(),
    );
    await expect(store.put('broken', failing, { size: 4 * 1024 * 1024 })).rejects.toThrow(
      'client went away',
    );
    await expect(store.stat('broken')).resolves.toBeUndefined();
  });

  it('refuses a template without a placeholder', () => {
    expect(() => createHttpBlobStore({ urlTemplate: `${base}/fixed` })).toThrow(
      expect.objectContaining({ code: 'CONFIG_INVALID' }),
    );
  });
});

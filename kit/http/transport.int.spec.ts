import type { IncomingMessage, ServerResponse } from 'node:http';
import { createServer } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import { Readable } from 'node:stream';
import {
  HttpExchangeError,
  createHttpTransport,
  readBody,
  sliceBody,
  unavailableStatuses,
} from './transport';
import { drain } from '../../test/fixtures/streams';

/** A loopback server answering with `handle`; counts requests. */
const serve = async (handle: (req: IncomingMessage, res: ServerResponse) => void) => {
  const sockets = new Set<Socket>();
  let requests = 0;
  const server = createServer((req, res) => {
    requests++;
    handle(req, res);
  });
  server.on('connection', (socket) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const url = new URL(`http://127.0.0.1:${(server.address() as AddressInfo).port}/x`);
  return {
    url,
    requests: () => requests,
    close: async () => {
      for (const socket of sockets) socket.destroy();
      await new Promise((resolve) => server.close(resolve));
    },
  };
};

const quick = { initialMs: 10, maxMs: 20 };

describe('the HTTP transport (kit/http)', () => {
  const closers: Array<() => Promise<void>> = [];
  afterEach(async () => {
    for (const close of closers.splice(0)) await close();
  });
  const server = async (handle: Parameters<typeof serve>[0]) => {
    const s = await serve(handle);
    closers.push(s.close);
    return s;
  };
  const transport = (options: Partial<Parameters<typeof createHttpTransport>[0]> = {}) => {
    const t = createHttpTransport({ idleTimeoutMs: 2000, backoff: quick, ...options });
    closers.push(() => t.close());
    return t;
  };

  it('retries an answer worth retrying, and gives the last one after maxAttempts', async () => {
    let failFirst = 2;
    const s = await server((_req, res) => {
      if (failFirst-- > 0) res.writeHead(503).end('busy');
      else res.writeHead(200).end('ok');
    });
    const t = transport({ maxAttempts: 3, retryStatuses: unavailableStatuses });
    const ok = await t.request({ method: 'GET', url: s.url });
    expect(ok.status).toBe(200);
    expect((await drain(ok.body)).toString()).toBe('ok');
    expect(s.requests()).toBe(3);
    failFirst = 10;
    const busy = await t.request({ method: 'GET', url: s.url });
    expect(busy.status).toBe(503);
    expect(s.requests()).toBe(6);
  });

  it('retries a connection that breaks before the answer, never one that already answered', async () => {
    let dropFirst = 1;
    const s = await server((req, res) => {
      if (dropFirst-- > 0) {
        req.socket.destroy();
        return;
      }
      res.writeHead(200, { 'content-length': 1000 });
      res.write('x'.repeat(10));
      setTimeout(() => req.socket.destroy(), 50);
    });
    const t = transport({ maxAttempts: 2 });
    const response = await t.request({ method: 'GET', url: s.url });
    expect(s.requests()).toBe(2);
    await expect(drain(response.body)).rejects.toThrow();
    expect(s.requests()).toBe(2);
  });

  it('never repeats a streamed body, and fails with the stream’s own error', async () => {
    const s = await server((req, res) => {
      req.resume();
      req.on('end', () => res.writeHead(503).end());
    });
    const t = transport({ maxAttempts: 3, retryStatuses: [503] });
    const answered = await t.request({
      method: 'PUT',
      url: s.url,
      body: Readable.from([Buffer.from('once')]),
    });
    expect(answered.status).toBe(503);
    expect(s.requests()).toBe(1);
    const failing = Readable.from(
      (async function* () {
        yield Buffer.alloc(1024);
        throw new Error('the source went away');
      })(),
    );
    await expect(t.request({ method: 'PUT', url: s.url, body: failing })).rejects.toThrow(
      'the source went away',
    );
  });

  it('times out a server that never answers, as a failed exchange', async () => {
    const s = await server(() => undefined);
    const t = transport({ idleTimeoutMs: 150, maxAttempts: 2 });
    const started = Date.now();
    const error = await t.request({ method: 'GET', url: s.url }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(HttpExchangeError);
    expect((error as HttpExchangeError).code).toBe('UND_ERR_HEADERS_TIMEOUT');
    expect(s.requests()).toBe(2);
    expect(Date.now() - started).toBeGreaterThanOrEqual(300);
  });

  it('times out a body that stalls, but not a reader that is slow', async () => {
    const s = await server((req, res) => {
      res.writeHead(200, { 'content-length': 20 });
      res.write('x'.repeat(10));
      if (req.url?.endsWith('stall') !== true) setTimeout(() => res.end('y'.repeat(10)), 20);
    });
    const t = transport({ idleTimeoutMs: 200 });
    const stalled = await t.request({ method: 'GET', url: new URL('/stall', s.url) });
    await expect(drain(stalled.body)).rejects.toMatchObject({ code: 'UND_ERR_BODY_TIMEOUT' });
    const slow = await t.request({ method: 'GET', url: s.url });
    await new Promise((resolve) => setTimeout(resolve, 500));
    expect((await drain(slow.body)).toString()).toBe(`${'x'.repeat(10)}${'y'.repeat(10)}`);
  });

  it('reads a body into memory up to a cap, and cuts a window out of one', async () => {
    const s = await server((_req, res) => res.writeHead(200).end('0123456789'));
    const t = transport();
    const capped = await readBody((await t.request({ method: 'GET', url: s.url })).body, 4);
    expect(capped).toEqual({ bytes: Buffer.from('0123'), truncated: true });
    const whole = await readBody((await t.request({ method: 'GET', url: s.url })).body, 64);
    expect(whole).toEqual({ bytes: Buffer.from('0123456789'), truncated: false });
    const fail = (why: string) => new Error(`failed: ${why}`);
    const window = sliceBody((await t.request({ method: 'GET', url: s.url })).body, {
      skip: 2,
      length: 5,
      fail,
    });
    expect((await drain(window)).toString()).toBe('23456');
    const short = sliceBody((await t.request({ method: 'GET', url: s.url })).body, {
      skip: 5,
      length: 10,
      fail,
    });
    await expect(drain(short)).rejects.toThrow('failed: body ended 5 bytes short');
  });
});

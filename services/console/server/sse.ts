import type { FastifyReply, FastifyRequest } from 'fastify';

/** One open server-sent event stream. */
export type SseStream = {
  /** Sends one message; false when the stream is closed (or was closed for falling behind). */
  send(event: string, data: unknown, id?: number): boolean;
  close(): void;
  readonly closed: boolean;
  /** Called once when the stream closes, by either side. */
  onClose(listener: () => void): void;
};

/**
 * Turns a request into a server-sent event stream (`text/event-stream`): the reply is taken
 * over from fastify, a comment is sent every `heartbeatMs` so idle streams stay open through
 * proxies, and a client that stops reading is cut once `maxBufferedBytes` wait in its socket
 * (it reconnects with `Last-Event-ID` and catches up), so one slow browser never holds memory.
 */
export const openSse = (
  request: FastifyRequest,
  reply: FastifyReply,
  options: { heartbeatMs?: number; maxBufferedBytes?: number; retryMs?: number } = {},
): SseStream => {
  const maxBuffered = options.maxBufferedBytes ?? 1024 * 1024;
  reply.hijack();
  const raw = reply.raw;
  raw.writeHead(200, {
    'content-type': 'text/event-stream; charset=utf-8',
    'cache-control': 'no-cache, no-transform',
    connection: 'keep-alive',
    'x-accel-buffering': 'no',
  });
  raw.write(`retry: ${options.retryMs ?? 2000}\n\n`);
  const listeners: Array<() => void> = [];
  let closed = false;
  const heartbeat = setInterval(() => {
    if (!closed) raw.write(': ping\n\n');
  }, options.heartbeatMs ?? 15_000);
  heartbeat.unref();

  const close = () => {
    if (closed) return;
    closed = true;
    clearInterval(heartbeat);
    raw.end();
    for (const listener of listeners.splice(0)) listener();
  };
  request.raw.socket.once('close', close);
  raw.once('close', close);

  return {
    send(event, data, id) {
      if (closed) return false;
      if (raw.writableLength > maxBuffered) {
        close();
        return false;
      }
      const head = id === undefined ? '' : `id: ${id}\n`;
      raw.write(`${head}event: ${event}\ndata: ${JSON.stringify(data)}\n\n`);
      return true;
    },
    close,
    get closed() {
      return closed;
    },
    onClose(listener) {
      if (closed) listener();
      else listeners.push(listener);
    },
  };
};

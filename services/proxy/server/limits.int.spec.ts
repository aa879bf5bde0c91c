import { connect } from 'node:net';
import type { Socket } from 'node:net';
import { createMemoryEventLog } from '../../../adapters/eventlog';
import { createMemoryProjectionStore } from '../../../adapters/projection-store/memory/memoryProjectionStore';
import { createTagService } from '../../build-index/tagService';
import { validateConfig } from '../../shared/config';
import { silentLogger } from '../../shared/logger';
import { createRoleSecurity } from '../../shared/security/roleSecurity';
import { ProxyConfigSchema } from '../config';
import type { RunningProxy } from '../main';
import { startProxy } from '../main';
import { createFsBlobAccess } from '../../../test/doubles/fsBlobAccess';
import { tempDir } from '../../../test/fixtures/cli';
import { eventually } from '../../../test/fixtures/processes';

// The proxy's listener under slow and idle clients, with the limits its config gives
// (`http.*`): a body that trickles in is cut at bodyTimeoutMs, while hundreds of idle
// connections do not keep /v2/ from answering; one address cannot open more than its share.

const bodyTimeoutMs = 2000;

const startLimitedProxy = async (http: object) => {
  const dir = tempDir('shoal-limits-');
  const log = createMemoryEventLog();
  const store = createMemoryProjectionStore();
  const writer = { clock: { now: () => Date.now() }, cluster: 'test', actor: 'proxy' };
  const config = validateConfig(ProxyConfigSchema, {
    listen: { host: '127.0.0.1', port: 0 },
    security: { mode: 'open' },
    http,
  });
  const security = createRoleSecurity(config, { role: 'proxy', name: '1' }, silentLogger());
  const blobs = await createFsBlobAccess({ dir: dir.path, log, writer });
  const proxy: RunningProxy = await startProxy({
    config,
    logger: silentLogger(),
    clock: writer.clock,
    log,
    store,
    blobs,
    tags: createTagService({ log, store, writer, waitFor: async () => undefined }),
    security,
  });
  return {
    proxy,
    port: Number(new URL(proxy.url).port),
    close: async () => {
      await proxy.close();
      security.close();
      dir.cleanup();
    },
  };
};

const open = (port: number): Promise<Socket> =>
  new Promise((resolve, reject) => {
    const socket = connect({ host: '127.0.0.1', port }, () => resolve(socket));
    socket.once('error', reject);
  });

/** Resolves with the ms until the server closes the socket. */
const closedAfter = (socket: Socket, since: number): Promise<number> =>
  new Promise((resolve) => {
    socket.on('error', () => undefined);
    socket.once('close', () => resolve(Date.now() - since));
  });

describe('the proxy listener with limits (http.*)', () => {
  it('cuts a trickling body at bodyTimeoutMs while 500 idle sockets leave /v2/ answering', async () => {
    const proxy = await startLimitedProxy({
      bodyTimeoutMs,
      bodyMinBytesPerSecond: 1024,
      headersTimeoutMs: 30_000,
    });
    const idle: Socket[] = [];
    let trickle: NodeJS.Timeout | undefined;
    try {
      for (let i = 0; i < 500; i += 1) idle.push(await open(proxy.port));

      const slow = await open(proxy.port);
      const started = Date.now();
      const closed = closedAfter(slow, started);
      slow.write(
        'POST /v2/limits/app/blobs/uploads/?digest=sha256:' +
          `${'0'.repeat(64)} HTTP/1.1\r\nHost: x\r\nContent-Type: application/octet-stream\r\n` +
          'Content-Length: 1048576\r\n\r\n',
      );
      // 40 bytes a second: far below the floor of 1 KiB/s, yet never idle.
      trickle = setInterval(() => slow.write('x'.repeat(10)), 250);

      const ping = Date.now();
      const v2 = await fetch(`${proxy.proxy.url}/v2/`, { signal: AbortSignal.timeout(5000) });
      expect(v2.status).toBe(200);
      expect(Date.now() - ping).toBeLessThan(1000);

      const after = await closed;
      expect(after).toBeGreaterThanOrEqual(bodyTimeoutMs - 100);
      expect(after).toBeLessThan(bodyTimeoutMs + 2500);
      // The idle sockets are all still open (they wait for their head timeout).
      expect(idle.every((socket) => !socket.destroyed)).toBe(true);
    } finally {
      clearInterval(trickle);
      for (const socket of idle) socket.destroy();
      await proxy.close();
    }
  });

  it('closes a connection past the cap of one address, and serves again once one closes', async () => {
    const proxy = await startLimitedProxy({ maxConnectionsPerAddress: 5 });
    const sockets: Socket[] = [];
    try {
      for (let i = 0; i < 5; i += 1) sockets.push(await open(proxy.port));
      const extra = await open(proxy.port);
      const closedIn = await closedAfter(extra, Date.now());
      expect(closedIn).toBeLessThan(2000);
      (sockets.pop() as Socket).destroy();
      // The server counts the closed one as soon as it sees it close.
      const status = await eventually('a connection within the cap', async () => {
        const v2 = await fetch(`${proxy.proxy.url}/v2/`, { signal: AbortSignal.timeout(5000) });
        return v2.status;
      });
      expect(status).toBe(200);
    } finally {
      for (const socket of sockets) socket.destroy();
      await proxy.close();
    }
  });

  it('answers 408 and closes a connection whose head does not arrive in headersTimeoutMs', async () => {
    const proxy = await startLimitedProxy({ headersTimeoutMs: 1500 });
    try {
      const socket = await open(proxy.port);
      const started = Date.now();
      let answer = '';
      socket.on('data', (chunk: Buffer) => (answer += chunk.toString()));
      const closed = closedAfter(socket, started);
      socket.write('GET /v2/ HTTP/1.1\r\nHost: x\r\n');
      const after = await closed;
      expect(after).toBeGreaterThanOrEqual(1400);
      expect(after).toBeLessThan(4000);
      expect(answer).toMatch(/^HTTP\/1\.1 408/);
    } finally {
      await proxy.close();
    }
  });
});

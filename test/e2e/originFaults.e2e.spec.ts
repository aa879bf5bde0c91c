import { spawn } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import type { Digest, RecordedEvent } from '../../domain';
import { blobObjectName, isShoalError } from '../../domain';
import type { OriginClient } from '../../services/origin/client/originClient';
import { createOriginClient } from '../../services/origin/client/originClient';
import type { Service } from '../fixtures/cli';
import { cliPath, shoal, startService, tempDir } from '../fixtures/cli';
import { blobFixture } from '../fixtures/blobs';
import { drain } from '../fixtures/streams';
import { testIdentity } from '../fixtures/security';

const listening = /origin \S+ listening on (http:\/\/\S+)/;

/** Kills a service the hard way and waits until it is gone. */
const kill9 = (service: Service): Promise<void> =>
  new Promise((resolve) => {
    if (service.child.exitCode !== null || service.child.signalCode !== null) return resolve();
    service.child.once('exit', () => resolve());
    service.child.kill('SIGKILL');
  });

const events = (dataDir: string): RecordedEvent[] => {
  const result = shoal(['log', 'tail', '--json', '--from', '1', '--data-dir', dataDir]);
  expect(result.stderr).toBe('');
  return result.stdout
    .split('\n')
    .filter(Boolean)
    .map((line) => JSON.parse(line) as RecordedEvent);
};

/** Follows the log through `shoal log tail --follow` until an event matches. */
const awaitEvent = (
  dataDir: string,
  match: (event: RecordedEvent) => boolean,
  timeoutMs = 30_000,
): Promise<RecordedEvent> =>
  new Promise((resolve, reject) => {
    const child = spawn(
      process.execPath,
      [cliPath, 'log', 'tail', '--follow', '--json', '--from', '1', '--data-dir', dataDir],
      { stdio: ['ignore', 'pipe', 'pipe'] },
    );
    let buffer = '';
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`no matching event within ${timeoutMs} ms`));
    }, timeoutMs);
    child.stdout.on('data', (data: Buffer) => {
      buffer += data.toString();
      for (let nl = buffer.indexOf('\n'); nl !== -1; nl = buffer.indexOf('\n')) {
        const event = JSON.parse(buffer.slice(0, nl)) as RecordedEvent;
        buffer = buffer.slice(nl + 1);
        if (match(event)) {
          clearTimeout(timer);
          child.kill('SIGTERM');
          resolve(event);
          return;
        }
      }
    });
  });

describe('shoal origin under kill -9', () => {
  let dir: ReturnType<typeof tempDir>;
  let service: Service | undefined;
  let client: OriginClient | undefined;
  const env = { SHOAL_LOG_LEVEL: 'warn' };

  const start = async (extraEnv: NodeJS.ProcessEnv = {}) => {
    await client?.close();
    service = await startService(
      ['origin', '--data-dir', dir.path, '--port', '0', '--id', 'e2e'],
      listening,
      { ...env, ...extraEnv },
    );
    client = createOriginClient(service.url, { identity: testIdentity('proxy') });
    return client;
  };

  beforeEach(() => {
    dir = tempDir('shoal-origin-e2e-');
  });
  afterEach(async () => {
    await client?.close();
    client = undefined;
    if (service !== undefined) await kill9(service);
    service = undefined;
    dir.cleanup();
  });

  it('killed mid-upload: the session resumes, no partial blob is visible', async () => {
    const blob = blobFixture(3 * 1024 * 1024);
    const half = blob.size / 2;
    let origin = await start();
    const { id } = await origin.startUpload({ repo: 'e2e/faults' });
    await origin.appendUpload(id, blob.content.subarray(0, half), { offset: 0 });

    // A second chunk starts streaming and stalls half-way: the origin dies under it.
    let sent: () => void = () => undefined;
    const partSent = new Promise<void>((resolve) => (sent = resolve));
    const stalled = Readable.from(
      (async function* () {
        for (let at = half; at < half + 512 * 1024; at += 64 * 1024) {
          yield blob.content.subarray(at, at + 64 * 1024);
        }
        sent();
        await new Promise(() => undefined); // never ends
      })(),
    );
    const broken = origin.appendUpload(id, stalled, { offset: half }).catch((e: unknown) => e);
    await partSent;
    await kill9(service as Service);
    expect(isShoalError(await broken)).toBe(true);

    origin = await start();
    // Nothing under the digest, on disk or on the log.
    await expect(origin.statBlob(blob.digest)).resolves.toBeUndefined();
    expect(events(dir.path).some((e) => e.type === 'BlobUploaded')).toBe(false);
    const hex = blob.digest.slice('sha256:'.length);
    expect(existsSync(join(dir.path, 'origin-e2e', 'blobs', 'sha256', hex.slice(0, 2), hex))).toBe(
      false,
    );

    // The session is resumable from what the origin kept (at least the acknowledged half).
    const { size } = await origin.uploadStatus(id);
    expect(size).toBeGreaterThanOrEqual(half);
    expect(size).toBeLessThanOrEqual(half + 512 * 1024);
    await origin.appendUpload(id, blob.content.subarray(size), { offset: size });
    const done = await origin.commitUpload(id, { digest: blob.digest });
    expect(done).toMatchObject({ digest: blob.digest, size: blob.size });
    expect((await drain((await origin.getBlob(blob.digest)).stream)).equals(blob.content)).toBe(
      true,
    );
  }, 60_000);

  it('killed after commit, before write-back: write-back completes after restart', async () => {
    const blob = blobFixture(512 * 1024);
    // The worker waits: the commit is acknowledged, its write-back only queued.
    let origin = await start({ SHOAL_WRITE_BACK_START_DELAY_MS: '600000' });
    const { id } = await origin.startUpload({ repo: 'e2e/faults' });
    const done = await origin.commitUpload(id, { digest: blob.digest, body: blob.content });
    expect(done.position).toBeGreaterThan(0);
    await kill9(service as Service);

    const before = events(dir.path);
    expect(before.some((e) => e.type === 'BlobUploaded' && e.data.digest === blob.digest)).toBe(
      true,
    );
    expect(before.some((e) => e.type === 'BlobPersisted')).toBe(false);
    const backendFile = join(
      dir.path,
      'backend',
      ...blobObjectName(blob.digest as Digest).split('/'),
    );
    expect(existsSync(backendFile)).toBe(false);

    origin = await start();
    const persisted = await awaitEvent(
      dir.path,
      (e) => e.type === 'BlobPersisted' && e.data.digest === blob.digest,
    );
    expect(persisted.data).toEqual({ digest: blob.digest, backend: 'filesystem' });
    expect(readFileSync(backendFile).equals(blob.content)).toBe(true);
    // The acknowledged blob is still served.
    expect((await drain((await origin.getBlob(blob.digest)).stream)).equals(blob.content)).toBe(
      true,
    );
  }, 60_000);
});

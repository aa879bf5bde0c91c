import { existsSync } from 'node:fs';
import { join } from 'node:path';
import type { Readable } from 'node:stream';
import type { RepoName } from '../../domain';
import type { BlobAccess } from './client/blobAccess';
import { createBlobAccess, staticRing } from './client/createBlobAccess';
import type { RunningOrigin } from './main';
import type { OriginHarness } from '../../test/doubles/originHarness';
import { createOriginHarness } from '../../test/doubles/originHarness';
import { blobFixture } from '../../test/fixtures/blobs';
import { randomRepo } from '../../test/fixtures/events';

// Watermark eviction on a real origin: above the high watermark it drops written-back blobs,
// least recently used first — but never one a response is still streaming, which goes once
// the reader is done; and an evicted blob is read again whole (from the backend).

const localPath = (origin: RunningOrigin, digest: string) => {
  const hex = digest.slice('sha256:'.length);
  return join(origin.directory, 'blobs', 'sha256', hex.slice(0, 2), hex);
};

const readAll = async (stream: Readable): Promise<Buffer> => {
  const parts: Buffer[] = [];
  for await (const part of stream) parts.push(part as Buffer);
  return Buffer.concat(parts);
};

describe('origin eviction above the watermark', () => {
  let harness: OriginHarness;
  let origin: RunningOrigin;
  let access: BlobAccess & { close: () => Promise<void> };

  beforeEach(async () => {
    harness = createOriginHarness();
    // Any blob is over 1 KiB: every check evicts all it may (down to 0).
    origin = await harness.start({
      id: 'a',
      replicas: 1,
      cache: { highWatermark: '1KiB', lowWatermark: '0', checkIntervalMs: 600_000 },
    });
    access = createBlobAccess({ ring: staticRing([{ id: 'a', url: origin.url }]), replicas: 1 });
  });
  afterEach(async () => {
    await access.close();
    await harness.cleanup();
  });

  it('never evicts a blob a response is streaming; evicts it once the reader is done', async () => {
    const repo = randomRepo() as RepoName;
    // Large enough that an unread response cannot sit whole in the sockets' buffers.
    const served = blobFixture(16 * 1024 * 1024);
    const idle = blobFixture(64 * 1024);
    for (const blob of [served, idle]) {
      await access.put(blob.digest, blob.content, { repo });
      await harness.waitForEvent(
        (e) => e.type === 'BlobPersisted' && e.data.digest === blob.digest,
        20_000,
      );
    }
    const reading = await access.get(served.digest);
    const first: Buffer = await new Promise((resolve) =>
      reading.stream.once('data', (chunk: Buffer) => {
        reading.stream.pause();
        resolve(chunk);
      }),
    );
    expect(first.length).toBeGreaterThan(0);

    await origin.checkCache();
    expect(existsSync(localPath(origin, idle.digest))).toBe(false);
    expect(existsSync(localPath(origin, served.digest))).toBe(true);

    // The paused reader gets every byte, then the blob may go.
    reading.stream.unshift(first);
    reading.stream.resume();
    expect((await readAll(reading.stream)).equals(served.content)).toBe(true);
    await origin.checkCache();
    expect(existsSync(localPath(origin, served.digest))).toBe(false);

    // Evicted blobs are read again whole, from the backend.
    for (const blob of [served, idle]) {
      const again = await access.get(blob.digest);
      expect((await readAll(again.stream)).equals(blob.content)).toBe(true);
    }
  }, 60_000);
});

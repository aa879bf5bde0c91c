import { readdirSync, statfsSync } from 'node:fs';
import { request } from 'node:http';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import type { OriginClient } from './client/originClient';
import { createOriginClient } from './client/originClient';
import type { RunningOrigin } from './main';
import type { OriginHarness } from '../../test/doubles/originHarness';
import { createOriginHarness } from '../../test/doubles/originHarness';
import { blobFixture } from '../../test/fixtures/blobs';
import { codeOf } from '../../test/fixtures/errors';
import { randomRepo } from '../../test/fixtures/events';

// The origin's free-disk watermark (uploads.minFreeDiskBytes), on the real disk: the
// watermark is set just below what is free now, so a push that would cross it is refused
// with STORAGE_FULL and leaves nothing in uploads/, while a small one still goes through.

const MiB = 1024 * 1024;

/** Sends a request that declares a GiB and sends 1 KiB; resolves with the early answer. */
const declareAndSend = (url: URL, method: string) =>
  new Promise<{ status: number; body: string }>((resolve, reject) => {
    const req = request(url, {
      method,
      headers: { 'content-type': 'application/octet-stream', 'content-length': 1024 * MiB },
    });
    req.on('response', (response) => {
      let body = '';
      response.on('data', (chunk: Buffer) => (body += chunk.toString()));
      response.on('end', () => resolve({ status: response.statusCode ?? 0, body }));
    });
    req.on('error', reject);
    req.write(Buffer.alloc(1024));
  });

describe('the free-disk watermark of an origin', () => {
  let harness: OriginHarness;

  const freeBytes = () => {
    const stats = statfsSync(harness.dir);
    return Number(stats.bavail) * Number(stats.bsize);
  };

  /** An origin whose watermark leaves `marginBytes` of what is free now for pushes. */
  const startWithMargin = async (marginBytes: number) => {
    const origin = await harness.start({
      id: 'o1',
      writeBack: { startDelayMs: 60_000 },
      uploads: { minFreeDiskBytes: Math.max(1, freeBytes() - marginBytes) },
    });
    return { origin, client: createOriginClient(origin.url) };
  };
  const uploadsOf = (origin: RunningOrigin) => readdirSync(join(origin.directory, 'uploads'));

  beforeEach(() => {
    harness = createOriginHarness();
  });
  afterEach(() => harness.cleanup());

  let client: OriginClient | undefined;
  afterEach(() => client?.close());

  it('refuses a chunk whose declared length would cross it, before reading it', async () => {
    const started = await startWithMargin(64 * MiB);
    client = started.client;
    const { id } = await client.startUpload({ repo: randomRepo() });
    // Declares a GiB, sends a few bytes: the answer comes without the rest.
    const answer = await declareAndSend(
      new URL(`/internal/uploads/${encodeURIComponent(id)}`, started.origin.url),
      'PATCH',
    );
    expect(answer.status).toBe(507);
    expect(JSON.parse(answer.body)).toMatchObject({
      code: 'STORAGE_FULL',
      detail: expect.stringMatching(/free disk space/),
    });
    expect(uploadsOf(started.origin)).toEqual([]);
    expect(await codeOf(client.uploadStatus(id))).toBe('BLOB_UPLOAD_UNKNOWN');
  });

  it('stops a streamed body when it crosses, and leaves nothing in uploads/', async () => {
    const started = await startWithMargin(16 * MiB);
    client = started.client;
    const { id } = await client.startUpload({ repo: randomRepo() });
    const chunk = Buffer.alloc(MiB, 7);
    // 128 MiB without a declared length: the guard looks again every few megabytes.
    const body = Readable.from(
      (function* () {
        for (let i = 0; i < 128; i += 1) yield chunk;
      })(),
    );
    expect(await codeOf(client.appendUpload(id, body))).toBe('STORAGE_FULL');
    expect(uploadsOf(started.origin)).toEqual([]);
    expect(await codeOf(client.uploadStatus(id))).toBe('BLOB_UPLOAD_UNKNOWN');
  });

  it('takes a push that stays clear of it, and refuses a whole-blob put that would not', async () => {
    const started = await startWithMargin(256 * MiB);
    client = started.client;
    const repo = randomRepo();
    const small = blobFixture(MiB);
    const { id } = await client.startUpload({ repo });
    await expect(
      client.commitUpload(id, { digest: small.digest, body: small.content }),
    ).resolves.toMatchObject({ digest: small.digest, size: small.size });
    // A whole blob declared larger than the margin: refused before a byte is stored.
    const put = await declareAndSend(
      new URL(`/internal/blobs/${blobFixture(1024).digest}?repo=${repo}`, started.origin.url),
      'PUT',
    );
    expect(put.status).toBe(507);
    expect(uploadsOf(started.origin)).toEqual([]);
  });
});

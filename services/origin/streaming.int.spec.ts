import { createHash } from 'node:crypto';
import { Readable } from 'node:stream';
import type { Digest } from '../../domain';
import { createOriginClient } from './client/originClient';
import type { OriginHarness } from '../../test/doubles/originHarness';
import { randomRepo } from '../../test/fixtures/events';
import { createOriginHarness } from '../../test/doubles/originHarness';

const MiB = 1024 * 1024;
const blobSize = 192 * MiB;
const chunkSize = 256 * 1024;

/** Deterministic content made chunk by chunk: never all in memory. */
const chunkAt = (index: number) => {
  const chunk = Buffer.alloc(chunkSize, index % 251);
  chunk.writeUInt32BE(index, 0);
  return chunk;
};
const content = (from: number, to: number) =>
  Readable.from(
    (function* () {
      for (let i = from / chunkSize; i < to / chunkSize; i++) yield chunkAt(i);
    })(),
    { objectMode: false },
  );
const digestOfContent = (): Digest => {
  const hash = createHash('sha256');
  for (let i = 0; i < blobSize / chunkSize; i++) hash.update(chunkAt(i));
  return `sha256:${hash.digest('hex')}` as Digest;
};

/** Samples RSS while `work` runs; resolves with the largest growth over the start. */
const peakRssGrowth = async (work: () => Promise<void>): Promise<number> => {
  const start = process.memoryUsage().rss;
  let peak = start;
  const sampler = setInterval(() => {
    peak = Math.max(peak, process.memoryUsage().rss);
  }, 5);
  try {
    await work();
  } finally {
    clearInterval(sampler);
  }
  return Math.max(peak, process.memoryUsage().rss) - start;
};

describe('origin streaming', () => {
  let harness: OriginHarness;
  beforeAll(() => {
    harness = createOriginHarness();
  });
  afterAll(async () => {
    await harness.cleanup();
  });

  it(`uploads and reads back a ${blobSize / MiB} MiB blob with flat memory`, async () => {
    const origin = await harness.start({ id: 'big', writeBack: { startDelayMs: 600_000 } });
    const client = createOriginClient(origin.url);
    const digest = digestOfContent();
    // Warm up the code paths so their one-off allocations do not count as growth.
    const warm = await client.startUpload({ repo: randomRepo() });
    await client.appendUpload(warm.id, content(0, 4 * MiB));
    await client.cancelUpload(warm.id);

    const growth = await peakRssGrowth(async () => {
      const { id } = await client.startUpload({ repo: randomRepo() });
      const half = blobSize / 2;
      await client.appendUpload(id, content(0, half), { offset: 0, length: half });
      const done = await client.commitUpload(id, {
        digest,
        body: content(half, blobSize),
        length: blobSize - half,
      });
      expect(done.size).toBe(blobSize);

      const read = await client.getBlob(digest);
      const hash = createHash('sha256');
      let received = 0;
      for await (const chunk of read.stream) {
        hash.update(chunk as Buffer);
        received += (chunk as Buffer).length;
      }
      expect(received).toBe(blobSize);
      expect(`sha256:${hash.digest('hex')}`).toBe(digest);
    });
    // Client and server share this process: both sides' buffers count, still far below.
    expect(growth).toBeLessThan(blobSize / 4);
    await client.close();
  }, 120_000);
});

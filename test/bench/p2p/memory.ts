import { randomBytes } from 'node:crypto';
import { fetchBlob, generatedBlob, startCluster } from './cluster';
import { MiB, rssWatch } from './processes';

/*
 * Memory stays flat as blobs grow: a fresh agent (no rate limit) pulls a small blob and
 * another a large one; each agent's peak RSS growth during its pull (and while it serves the
 * blob to the harness) is printed for both sizes.
 */

export type MemoryOptions = {
  readonly dir: string;
  readonly small: number;
  readonly large: number;
  readonly log: (line: string) => void;
};

export const runMemory = async (options: MemoryOptions) => {
  const { dir, small, large, log } = options;
  const cluster = await startCluster({ dir, originRate: 0 });
  const warm = await cluster.put(randomBytes(4 * MiB));
  const growth: number[] = [];
  for (const size of [small, large]) {
    const blob = generatedBlob(`memory-${size}`, size);
    await cluster.put(blob);
    const [agent] = await cluster.startAgents(1, 0);
    if (agent === undefined) throw new Error('the agent did not start');
    await fetchBlob(`${agent.url}/blobs/${warm}`);
    const watch = rssWatch(agent.child.pid);
    const fetched = await fetchBlob(`${agent.url}/blobs/${blob.digest}`);
    const grew = watch.stop();
    if (fetched.digest !== blob.digest) throw new Error('the agent got a wrong blob');
    growth.push(grew);
    log(
      `agent pulling ${(size / MiB).toFixed(0)} MiB: RSS ${(watch.base / MiB).toFixed(0)} MiB ` +
        `before, peak growth +${(grew / MiB).toFixed(1)} MiB ` +
        `(${(((size / fetched.ms) * 1000) / 1e6).toFixed(0)} MB/s)`,
    );
  }
  const [smallGrowth = 0, largeGrowth = 0] = growth;
  const ratio = largeGrowth / Math.max(smallGrowth, MiB);
  log(
    `RSS growth ${(large / MiB).toFixed(0)} MiB ÷ ${(small / MiB).toFixed(0)} MiB: ` +
      `${ratio.toFixed(2)} (flat: ≤ 1.5; growths under 1 MiB count as 1 MiB)`,
  );
  return { small, large, small_growth: smallGrowth, large_growth: largeGrowth, ratio };
};

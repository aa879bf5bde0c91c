import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createMemoryEventLog } from '../../adapters/eventlog/memory/memoryEventLog';
import { systemClock } from '../../services/shared/clock';
import { describeBlobAccessContract } from '../contracts/blobAccessContract';
import { createFsBlobAccess } from './fsBlobAccess';

// The filesystem double keeps the contract the proxy's and the replicator's specs rely on.
describeBlobAccessContract('filesystem double', async (upstream) => {
  const dir = mkdtempSync(join(tmpdir(), 'shoal-fs-blob-access-'));
  const log = createMemoryEventLog();
  const access = await createFsBlobAccess({
    dir,
    log,
    writer: { clock: systemClock, cluster: 'test', actor: 'contract' },
    pullsThrough: (repo) => repo.startsWith(`${upstream.namespace}/`),
    upstream: async (repo, reference) =>
      repo.startsWith(`${upstream.namespace}/`) ? upstream.manifests.get(reference) : undefined,
  });
  return {
    access,
    log,
    cleanup: async () => {
      await log.close();
      rmSync(dir, { recursive: true, force: true });
    },
  };
});

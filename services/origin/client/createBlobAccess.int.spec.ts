import { describeBlobAccessContract } from '../../../test/contracts/blobAccessContract';
import { createOriginHarness } from '../../../test/doubles/originHarness';
import { upstreamManifestStore } from '../../../test/doubles/upstreamManifestStore';
import { createBlobAccess, staticRing } from './createBlobAccess';

// The real BlobAccess: over the HTTP API of two origins that own every blob (R = 2), on one
// log, with a pull-through namespace routed to an upstream registry's manifests. The origins
// run open (no cluster identities), so they cannot trust whom the access says it acts for.
describeBlobAccessContract(
  'origins',
  async (upstream) => {
    const harness = createOriginHarness();
    const routes = [
      { namespace: `${upstream.namespace}/.*`, store: upstreamManifestStore(upstream.manifests) },
    ];
    const a = await harness.start({ id: 'a', replicas: 2 }, { routes });
    const b = await harness.start({ id: 'b', replicas: 2 }, { routes });
    // Both must see both members before placement is stable.
    await a.runner.waitFor(await harness.log.head(), 5000);
    await b.runner.waitFor(await harness.log.head(), 5000);
    const access = createBlobAccess({
      ring: staticRing([
        { id: 'a', url: a.url },
        { id: 'b', url: b.url },
      ]),
      replicas: 2,
    });
    return {
      access,
      log: harness.log,
      cleanup: async () => {
        await access.close();
        await harness.cleanup();
      },
    };
  },
  { knowsOwners: false },
);

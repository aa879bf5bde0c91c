import type { RepoName } from '../../domain';
import { createBlobAccess, staticRing } from './client/createBlobAccess';
import { blobFixture, createOriginHarness, freshRepo } from './testing/harness';

for (const step of ['put', 'put-wait']) {
  it(step, async () => {
    const harness = createOriginHarness();
    const a = await harness.start({ id: 'a' });
    const b = await harness.start({ id: 'b' });
    await a.runner.waitFor(await harness.log.head(), 5000);
    const access = createBlobAccess({ ring: staticRing([{ id: 'a', url: a.url }, { id: 'b', url: b.url }]), replicas: 2 });
    const blob = blobFixture(50_000);
    await access.put(blob.digest, blob.content, { repo: freshRepo() as RepoName });
    if (step === 'put-wait') {
      await harness.waitForEvent((e) => e.type === 'BlobPersisted');
      await harness.waitForEvent((e) => e.type === 'BlobPlaced' && e.metadata.actor !== (e as any).x && e.position > 3);
    }
    console.log((await harness.events()).map((e) => `${e.type} ${JSON.stringify(e.data).slice(0, 40)} ${e.metadata.actor}`).join('\n'));
    let t = Date.now();
    await a.close();
    console.log(step, 'a', Date.now() - t);
    t = Date.now();
    await b.close();
    console.log(step, 'b', Date.now() - t);
    await access.close();
    await harness.cleanup();
  }, 200000);
}

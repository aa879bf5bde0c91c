import { isShoalError } from '../../domain';
import type { OriginClient } from './client/originClient';
import { createOriginClient } from './client/originClient';
import type { OriginHarness } from '../../test/doubles/originHarness';
import { createOriginHarness } from '../../test/doubles/originHarness';
import { upstreamManifestStore } from '../../test/doubles/upstreamManifestStore';
import { sha256 } from '../../test/fixtures/blobs';
import { drain } from '../../test/fixtures/streams';

const indexType = 'application/vnd.oci.image.index.v1+json';

const errorOf = (promise: Promise<unknown>) =>
  promise.then(
    () => undefined,
    (error: unknown) => error,
  );

describe('origin pull-through of manifests (POST /internal/pull-through/manifests)', () => {
  let harness: OriginHarness;
  const clients: OriginClient[] = [];
  const state = { down: false, asked: [] as string[] };
  const index = Buffer.from(
    JSON.stringify({ schemaVersion: 2, mediaType: indexType, manifests: [] }),
  );
  const manifests = new Map([
    ['v1', { bytes: index, mediaType: indexType }],
    [sha256(index), { bytes: index, mediaType: indexType }],
  ]);

  beforeEach(() => {
    harness = createOriginHarness();
    state.down = false;
    state.asked = [];
  });
  afterEach(async () => {
    await Promise.all(clients.splice(0).map((c) => c.close()));
    await harness.cleanup();
  });

  const start = async (id: string, replicas = 1) => {
    const origin = await harness.start(
      { id, replicas },
      { routes: [{ namespace: 'hub/.*', store: upstreamManifestStore(manifests, state) }] },
    );
    const client = createOriginClient(origin.url);
    clients.push(client);
    return { origin, client };
  };

  it('fetches a manifest by tag, stores it as a blob of the repository, answers it', async () => {
    const { client } = await start('o1');
    const pulled = await client.pullManifest('hub/library/app', 'v1');
    expect(pulled).toMatchObject({
      digest: sha256(index),
      mediaType: indexType,
      size: index.length,
    });
    expect(pulled.bytes.equals(index)).toBe(true);
    expect(pulled.position).toBeGreaterThan(0);
    // Held here now, readable without the upstream.
    const read = await client.getBlob(sha256(index), { local: true });
    expect((await drain(read.stream)).equals(index)).toBe(true);
    const events = await harness.events();
    const ofIt = events.filter((e) => 'digest' in e.data && e.data.digest === sha256(index));
    expect(ofIt.map((e) => e.type)).toEqual(['BlobUploaded', 'BlobPlaced']);
    expect(ofIt[0]?.data).toMatchObject({ repo: 'hub/library/app', mediaType: indexType });
    // By digest too (already here: recorded again, fetched again, not stored twice).
    const again = await client.pullManifest('hub/library/app', sha256(index));
    expect(again.digest).toBe(sha256(index));
    expect(state.asked).toEqual(['hub/library/app:v1', `hub/library/app:${sha256(index)}`]);
  });

  it('copies a pulled manifest to its other owner, and writes nothing back upstream', async () => {
    const a = await start('a', 2);
    await start('b', 2);
    await a.client.pullManifest('hub/library/app', 'v1');
    const placed = new Set<string>();
    await harness.waitForEvent((e) => {
      if (e.type === 'BlobPlaced' && e.data.digest === sha256(index)) placed.add(e.data.origin);
      return placed.size === 2;
    });
    expect([...placed].sort()).toEqual(['a', 'b']);
    await new Promise((resolve) => setTimeout(resolve, 300));
    const events = await harness.events();
    expect(events.filter((e) => e.type === 'BlobPersisted')).toEqual([]);
  });

  it('MANIFEST_UNKNOWN outside pull-through namespaces and for what the upstream lacks', async () => {
    const { client, origin } = await start('o1');
    const elsewhere = await errorOf(client.pullManifest('local/app', 'v1'));
    expect(isShoalError(elsewhere, 'MANIFEST_UNKNOWN')).toBe(true);
    expect((elsewhere as Error).message).toMatch(/not pulled through/);
    const missing = await errorOf(client.pullManifest('hub/library/app', 'nope'));
    expect(isShoalError(missing, 'MANIFEST_UNKNOWN')).toBe(true);
    const invalid = await errorOf(client.pullManifest('hub/library/app', '.bad'));
    expect(isShoalError(invalid, 'TAG_INVALID')).toBe(true);
    // The in-process client answers alike.
    const local = await errorOf(origin.client.pullManifest('local/app', 'v1'));
    expect(isShoalError(local, 'MANIFEST_UNKNOWN')).toBe(true);
    expect((await origin.client.pullManifest('hub/x', 'v1')).bytes.equals(index)).toBe(true);
  });

  it("answers a tag's digest upstream (GET /internal/pull-through/tags)", async () => {
    const { client, origin } = await start('o1');
    await expect(client.upstreamDigest('hub/library/app', 'v1')).resolves.toEqual({
      digest: sha256(index),
    });
    // A HEAD only: no manifest fetched.
    expect(state.asked).toEqual(['HEAD hub/library/app:v1']);
    // Outside pull-through namespaces there is no upstream to ask; the in-process client alike.
    await expect(client.upstreamDigest('local/app', 'v1')).resolves.toEqual({});
    await expect(origin.client.upstreamDigest('local/app', 'v1')).resolves.toEqual({});
    const missing = await errorOf(client.upstreamDigest('hub/library/app', 'nope'));
    expect(isShoalError(missing, 'MANIFEST_UNKNOWN')).toBe(true);
    const invalid = await errorOf(client.upstreamDigest('hub/library/app', '.bad'));
    expect(isShoalError(invalid, 'TAG_INVALID')).toBe(true);
    state.down = true;
    const down = await errorOf(client.upstreamDigest('hub/library/app', 'v1'));
    expect(isShoalError(down, 'STORAGE_UNAVAILABLE')).toBe(true);
  });

  it('passes an unreachable upstream on as a 503', async () => {
    const { origin } = await start('o1');
    state.down = true;
    const response = await fetch(
      `${origin.url}/internal/pull-through/manifests?repo=hub/library/app&reference=v1`,
      { method: 'POST' },
    );
    expect(response.status).toBe(503);
    expect(((await response.json()) as { code: string }).code).toBe('STORAGE_UNAVAILABLE');
  });
});

import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Digest, EventLog, RecordedEvent, RepoName, Tag } from '../../domain';
import { createMemoryEventLog } from '../../adapters/eventlog';
import { createMemoryProjectionStore } from '../../adapters/projection-store/memory/memoryProjectionStore';
import type { RegistryClient } from '../../adapters/registry/registryClient';
import { createRegistryClient } from '../../adapters/registry/registryClient';
import {
  buildIndexProjection,
  referrersProjection,
  replicationProjection,
} from '../../projections';
import { createTagService } from '../build-index/tagService';
import type { FakeRegistry } from '../../test/doubles/fakeRegistry';
import { startFakeRegistry } from '../../test/doubles/fakeRegistry';
import { createFsBlobAccess } from '../../test/doubles/fsBlobAccess';
import { systemClock } from '../shared/clock';
import { validateConfig } from '../shared/config';
import { silentLogger } from '../shared/logger';
import { createProjectionRunner } from '../shared/projectionRunner';
import type { ReplicationApi, RuleStatus } from './client/replicationApi';
import { ReplicationConfigSchema } from './config';
import { sourceFromBlobAccess } from './copier';
import { createReplicationService } from './replicationService';
import type { Replicator } from './replicator';
import { createReplicator } from './replicator';
import { sha256 } from '../../test/fixtures/blobs';
import { eventually } from '../../test/fixtures/processes';
import { manifestPushed } from '../../test/fixtures/events';

/** Waits on a signal (a status, the log): polled every 20 ms, at most 15 s. */
const quick = [15_000, 20] as const;

/** A source cluster in memory: log, projections, blobs on disk, tags; replicators on it. */
const sourceCluster = async () => {
  const dir = mkdtempSync(join(tmpdir(), 'shoal-replicator-int-'));
  const log: EventLog = createMemoryEventLog();
  const store = createMemoryProjectionStore();
  const runner = createProjectionRunner({
    log,
    store,
    projections: [buildIndexProjection, replicationProjection, referrersProjection],
  });
  runner.start();
  const writer = { clock: systemClock, cluster: 'src', actor: 'test' };
  const blobs = await createFsBlobAccess({ dir, log, writer });
  const tags = createTagService({
    log,
    store,
    writer,
    waitFor: (p) => runner.waitFor(p, 5000),
  });
  const clients = new Map<string, RegistryClient>();
  const replicators: Replicator[] = [];

  const replicator = (config: Record<string, unknown> = {}) => {
    const r = createReplicator({
      log,
      store,
      projections: runner,
      config: validateConfig(ReplicationConfigSchema, {
        backoff: { initialMs: 20, maxMs: 200 },
        allowedDestinations: ['http://127.0.0.1:*'],
        ...config,
      }),
      cluster: 'src',
      logger: silentLogger(),
      clock: systemClock,
      source: sourceFromBlobAccess(blobs),
      destination: (url) => {
        let client = clients.get(url);
        if (client === undefined)
          clients.set(url, (client = createRegistryClient({ baseUrl: url })));
        return client;
      },
    });
    replicators.push(r);
    r.start();
    return r;
  };

  const api = (r?: Replicator, allowedDestinations?: readonly string[]): ReplicationApi =>
    createReplicationService({
      log,
      store,
      writer,
      clock: systemClock,
      waitFor: (p) => runner.waitFor(p, 5000, replicationProjection.name),
      ...(r !== undefined && { replicator: r }),
      ...(allowedDestinations !== undefined && { allowedDestinations }),
    });

  /**
   * Stores a one-layer image manifest in the source's blobs and records it as the proxy
   * records a push (so build-index lets a tag point at it); with a `subject`, a referrer.
   */
  const storeManifest = async (
    repo: string,
    config: { bytes: Buffer; mediaType: string },
    layer: { bytes: Buffer; mediaType: string },
    extra: { subject?: Digest; artifactType?: string } = {},
  ) => {
    const put = async ({ bytes, mediaType }: { bytes: Buffer; mediaType: string }) => {
      await blobs.put(sha256(bytes), bytes, { repo: repo as RepoName, mediaType });
      return { mediaType, digest: sha256(bytes), size: bytes.length };
    };
    const configDesc = await put(config);
    const layerDesc = await put(layer);
    const subject =
      extra.subject === undefined
        ? undefined
        : {
            mediaType: 'application/vnd.oci.image.manifest.v1+json',
            digest: extra.subject,
            size: (await blobs.get(extra.subject)).size,
          };
    const manifest = await put({
      bytes: Buffer.from(
        JSON.stringify({
          schemaVersion: 2,
          mediaType: 'application/vnd.oci.image.manifest.v1+json',
          ...(extra.artifactType !== undefined && { artifactType: extra.artifactType }),
          config: configDesc,
          layers: [layerDesc],
          ...(subject !== undefined && { subject }),
        }),
      ),
      mediaType: 'application/vnd.oci.image.manifest.v1+json',
    });
    await log.append([
      manifestPushed({
        repo,
        digest: manifest.digest,
        size: manifest.size,
        references: [configDesc.digest, layerDesc.digest],
        ...extra,
      }),
    ]);
    return { digest: manifest.digest, layer: layerDesc.digest };
  };

  /** A one-layer image; returns the manifest digest. */
  const image = async (repo: string): Promise<Digest> =>
    (
      await storeManifest(
        repo,
        {
          bytes: Buffer.from(JSON.stringify({ seed: randomBytes(8).toString('hex') })),
          mediaType: 'application/vnd.oci.image.config.v1+json',
        },
        { bytes: randomBytes(3000), mediaType: 'application/vnd.oci.image.layer.v1.tar+gzip' },
      )
    ).digest;

  /** A referrer of `subject` with one layer, as `oras attach` makes it. */
  const referrer = (repo: string, subject: Digest, artifactType: string) =>
    storeManifest(
      repo,
      { bytes: Buffer.from('{}'), mediaType: 'application/vnd.oci.empty.v1+json' },
      { bytes: randomBytes(500), mediaType: 'text/plain' },
      { subject, artifactType },
    );

  const tag = (repo: string, name: string, digest: Digest) =>
    tags.put({ repo: repo as RepoName, tag: name as Tag }, digest);

  /** Events of one type, their data loosely typed for assertions. */
  const events = async (
    type: string,
  ): Promise<Array<RecordedEvent & { data: Record<string, unknown> }>> => {
    const out: Array<RecordedEvent & { data: Record<string, unknown> }> = [];
    for await (const event of log.read(1)) {
      if (event.type === type) out.push(event as RecordedEvent & { data: Record<string, unknown> });
    }
    return out;
  };

  return {
    log,
    tags,
    replicator,
    api,
    image,
    referrer,
    tag,
    events,
    close: async () => {
      await Promise.all(replicators.map((r) => r.stop()));
      for (const client of clients.values()) client.close();
      await runner.stop();
      rmSync(dir, { recursive: true, force: true });
    },
  };
};

type Source = Awaited<ReturnType<typeof sourceCluster>>;

const statusOf = async (api: ReplicationApi, ruleId: string): Promise<RuleStatus> => {
  const rule = (await api.status()).rules.find((r) => r.id === ruleId);
  if (rule === undefined) throw new Error(`no rule ${ruleId}`);
  return rule;
};

const caughtUp = (api: ReplicationApi, ruleId: string) =>
  eventually(
    `rule ${ruleId} caught up`,
    async () => {
      const rule = await statusOf(api, ruleId);
      return rule.lag.positions === 0 && rule.state === 'caught-up' ? rule : undefined;
    },
    ...quick,
  );

describe('the replicator (in-memory source, fake destination registries)', () => {
  let source: Source;
  const fakes: FakeRegistry[] = [];
  beforeEach(async () => {
    source = await sourceCluster();
  });
  afterEach(async () => {
    await source.close();
    await Promise.all(fakes.splice(0).map((f) => f.close()));
  });
  const destination = async (options: Parameters<typeof startFakeRegistry>[0] = {}) => {
    const fake = await startFakeRegistry(options);
    fakes.push(fake);
    return fake;
  };

  it('a tag moved five times while the destination was down: only the latest is written', async () => {
    const fake = await destination();
    fake.down = true;
    const api = source.api(source.replicator());
    const { rule } = await api.addRule({ repoPattern: 'team/**', destination: fake.url });
    const digests: Digest[] = [];
    for (let i = 0; i < 5; i++) digests.push(await source.image('team/app'));
    for (const digest of digests) await source.tag('team/app', 'latest', digest);
    await source.tag('team/app', 'gone', digests[0] as Digest);
    await source.tags.delete({ repo: 'team/app' as RepoName, tag: 'gone' as Tag });

    const failing = await eventually(
      'failures while down',
      async () => {
        const s = await statusOf(api, rule.id);
        return s.failures.consecutive > 0 ? s : undefined;
      },
      ...quick,
    );
    expect(failing.state).toBe('retrying');
    expect(failing.failures.last?.retryAt).toBeDefined();
    fake.down = false;
    await caughtUp(api, rule.id);

    expect(fake.tags.get('team/app:latest')).toBe(digests[4]);
    expect(fake.tags.has('team/app:gone')).toBe(false);
    const puts = fake.requests.filter((r) => r === 'PUT /v2/team/app/manifests/latest');
    expect(puts).toHaveLength(1);
    // Every change is recorded, once, in source order, with what the destination got.
    const changes = (await source.events('TagPushed')).filter((e) => e.data.tag === 'latest');
    const succeeded = (await source.events('ReplicationSucceeded')).filter(
      (e) => e.data.tag === 'latest',
    );
    expect(succeeded.map((e) => e.data.sourcePosition)).toEqual(changes.map((e) => e.position));
    expect(new Set(succeeded.map((e) => e.data.digest))).toEqual(new Set([digests[4]]));
  });

  it('two replicators on one log copy harmlessly: each outcome is recorded once', async () => {
    const fake = await destination();
    source.replicator();
    const api = source.api(source.replicator());
    const { rule } = await api.addRule({ repoPattern: '**', destination: fake.url });
    for (let i = 0; i < 6; i++) {
      await source.tag(`r/${i % 2}`, `t${i}`, await source.image(`r/${i % 2}`));
    }
    await source.tag('r/0', 't0', await source.image('r/0'));
    await caughtUp(api, rule.id);
    const succeeded = await source.events('ReplicationSucceeded');
    const positions = succeeded.map((e) => e.data.sourcePosition);
    expect(positions).toHaveLength(7);
    expect(new Set(positions).size).toBe(7);
    for (const [key, digest] of fake.tags) {
      const [repo, name] = key.split(':') as [string, string];
      expect((await source.tags.get({ repo: repo as RepoName, tag: name as Tag })).digest).toBe(
        digest,
      );
    }
    expect(fake.tags.size).toBe(6);
  });

  it('with maxAttempts, gives a change up (recorded without retryAt) and moves on', async () => {
    const fake = await destination();
    fake.rejectTags.add('bad');
    const api = source.api(source.replicator({ maxAttempts: 2 }));
    const { rule } = await api.addRule({ repoPattern: '**', destination: fake.url });
    await source.tag('x/app', 'bad', await source.image('x/app'));
    await source.tag('x/app', 'good', await source.image('x/app'));
    const done = await caughtUp(api, rule.id);
    expect(done.skipped).toBe(1);
    expect(done.replicated).toBe(1);
    const failed = await source.events('ReplicationFailed');
    expect(failed.map((e) => [e.data.attempt, e.data.retryAt === undefined])).toEqual([
      [1, false],
      [2, true],
    ]);
    expect(failed[1]?.data.error).toMatch(/MANIFEST_INVALID/);
    expect(fake.tags.has('x/app:good')).toBe(true);
  });

  it('one destination down never holds back a rule to another', async () => {
    const [down, up] = [await destination(), await destination()];
    down.down = true;
    const api = source.api(source.replicator());
    const toDown = (await api.addRule({ repoPattern: '**', destination: down.url })).rule;
    const toUp = (await api.addRule({ repoPattern: '**', destination: up.url })).rule;
    for (let i = 0; i < 3; i++) await source.tag('s/app', `v${i}`, await source.image('s/app'));
    await caughtUp(api, toUp.id);
    expect(up.tags.size).toBe(3);
    const stuck = await statusOf(api, toDown.id);
    expect(stuck.lag.positions).toBeGreaterThan(0);
    expect(down.tags.size).toBe(0);
  });

  it('no tag deletes at the destination: the manifest is deleted by digest when unshared', async () => {
    const fake = await destination({ noTagDelete: true });
    const api = source.api(source.replicator());
    const { rule } = await api.addRule({ repoPattern: '**', destination: fake.url });
    const [d1, d2] = [await source.image('c/app'), await source.image('c/app')];
    await source.tag('c/app', 'alone', d1);
    await source.tag('c/app', 'shared-1', d2);
    await source.tag('c/app', 'shared-2', d2);
    await caughtUp(api, rule.id);
    await source.tags.delete({ repo: 'c/app' as RepoName, tag: 'alone' as Tag });
    await source.tags.delete({ repo: 'c/app' as RepoName, tag: 'shared-1' as Tag });
    const done = await caughtUp(api, rule.id);
    expect([...fake.tags.keys()].sort()).toEqual(['c/app:shared-1', 'c/app:shared-2']);
    expect(done.skipped).toBe(1);
    expect(done.failures.last?.error).toMatch(/shared-2 still uses/);
  });

  it('replicates only to allowed destinations: refused when added, given up when on the log', async () => {
    const fake = await destination();
    const checked = source.api(source.replicator({ allowedDestinations: ['https://*.example'] }), [
      'https://*.example',
    ]);
    expect(
      await checked.addRule({ repoPattern: '**', destination: fake.url }).then(
        () => undefined,
        (error: { code?: string }) => error.code,
      ),
    ).toBe('DENIED');
    await expect(
      checked.addRule({ repoPattern: '**', destination: 'https://dr.example' }),
    ).resolves.toMatchObject({ rule: { destination: 'https://dr.example' } });
    // A rule another writer put on the log: this replicator sends nothing to its destination.
    const unchecked = source.api();
    const { rule } = await unchecked.addRule({ repoPattern: 'nope/**', destination: fake.url });
    await source.tag('nope/app', 'v1', await source.image('nope/app'));
    const done = await caughtUp(checked, rule.id);
    expect(done.skipped).toBe(1);
    expect(done.failures.last?.error).toMatch(/not in replication.allowedDestinations/);
    expect(fake.requests).toEqual([]);
  });
  it('referrers follow their subject, blobs first; a retry writes nothing twice', async () => {
    // The fake has no referrers API: the subject's referrers tag lists them instead.
    const fake = await destination();
    const api = source.api(source.replicator());
    const subject = await source.image('team/app');
    const sig = await source.referrer('team/app', subject, 'application/vnd.e2e.signature');
    const referrersTag = `sha256-${subject.slice(7)}`;
    fake.rejectTags.add(referrersTag);
    const { rule } = await api.addRule({ repoPattern: 'team/**', destination: fake.url });
    await source.tag('team/app', 'v1', subject);
    await eventually(
      'a failed attempt at the referrers tag',
      async () => ((await statusOf(api, rule.id)).failures.total > 0 ? true : undefined),
      ...quick,
    );
    fake.rejectTags.delete(referrersTag);
    await caughtUp(api, rule.id);

    const listed = () =>
      JSON.parse(
        fake.manifests
          .get(`team/app@${fake.tags.get(`team/app:${referrersTag}`)}`)
          ?.bytes.toString('utf8') ?? '{"manifests":[]}',
      ) as {
        manifests: Array<{ digest: string; artifactType?: string }>;
      };
    expect(fake.tags.get('team/app:v1')).toBe(subject);
    expect(listed().manifests).toEqual([
      expect.objectContaining({
        digest: sig.digest,
        artifactType: 'application/vnd.e2e.signature',
      }),
    ]);
    const putSig = `PUT /v2/team/app/manifests/${sig.digest}`;
    expect(fake.requests.filter((r) => r === putSig)).toHaveLength(1);
    expect(fake.requests.indexOf(`HEAD /v2/team/app/blobs/${sig.layer}`)).toBeLessThan(
      fake.requests.indexOf(putSig),
    );
    expect(fake.blobs.has(sig.layer)).toBe(true);

    // Pushed after its subject was replicated: it follows on its own, recorded under the
    // referrers tag's name.
    const late = await source.referrer('team/app', subject, 'application/spdx+json');
    await caughtUp(api, rule.id);
    expect(listed().manifests.map((m) => m.digest)).toEqual([sig.digest, late.digest]);
    const succeeded = await source.events('ReplicationSucceeded');
    expect(succeeded.map((e) => [e.data['tag'], e.data['digest']])).toContainEqual([
      referrersTag,
      late.digest,
    ]);
    // Its subject elsewhere is not at the destination: nothing is sent for it.
    const other = await source.image('team/other');
    const before = fake.requests.length;
    await source.referrer('team/other', other, 'application/vnd.e2e.signature');
    await caughtUp(api, rule.id);
    expect(fake.requests.slice(before).filter((r) => r.startsWith('PUT'))).toEqual([]);
  });
  it('a destination with the referrers API gets no referrers tag', async () => {
    const fake = await destination({ referrersApi: true });
    const api = source.api(source.replicator());
    const { rule } = await api.addRule({ repoPattern: 'team/**', destination: fake.url });
    const subject = await source.image('team/app');
    const sig = await source.referrer('team/app', subject, 'application/vnd.e2e.signature');
    await source.tag('team/app', 'v1', subject);
    await caughtUp(api, rule.id);
    // Another tag of the same subject copies its referrers again, as a retry would: nothing
    // is written twice.
    await source.tag('team/app', 'v2', subject);
    await caughtUp(api, rule.id);
    expect(fake.manifests.has(`team/app@${sig.digest}`)).toBe(true);
    expect([...fake.tags.keys()].sort()).toEqual(['team/app:v1', 'team/app:v2']);
    expect(fake.requests.filter((r) => r.startsWith('PUT /v2/'))).toEqual([
      'PUT /v2/team/app/manifests/v1',
      `PUT /v2/team/app/manifests/${sig.digest}`,
      'PUT /v2/team/app/manifests/v2',
    ]);
    expect(fake.requests).toContain(`GET /v2/team/app/referrers/${subject}`);
  });
});

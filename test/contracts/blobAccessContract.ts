import { randomBytes } from 'node:crypto';
import { Readable } from 'node:stream';
import type { Digest, EventLog, Position, RecordedEvent, RepoName, Tag } from '../../domain';
import type { BlobAccess } from '../../services/origin/client/blobAccess';
import type { UpstreamManifest } from '../doubles/upstreamManifestStore';
import { blobFixture, sha256 } from '../fixtures/blobs';
import { randomRepo } from '../fixtures/events';
import { drain } from '../fixtures/streams';
import { codeOf } from '../fixtures/errors';

/**
 * The upstream registry a cluster pulls manifests through: repositories under
 * `<namespace>/` are pulled through it (no other is), and it serves `manifests`, by tag or
 * digest, to each of them.
 */
export type PullThroughUpstream = {
  readonly namespace: string;
  readonly manifests: ReadonlyMap<string, UpstreamManifest>;
};

export type BlobAccessUnderTest = {
  readonly access: BlobAccess;
  /** The cluster's log, where the access records what it stores. */
  readonly log: EventLog;
  readonly cleanup: () => Promise<void>;
};

/** A fresh access on an empty cluster whose pull-through goes to `upstream`. */
export type BlobAccessFactory = (upstream: PullThroughUpstream) => Promise<BlobAccessUnderTest>;

const body = (...chunks: Buffer[]) => Readable.from(chunks);
const freshRepo = () => randomRepo('contract/r') as RepoName;
const indexType = 'application/vnd.oci.image.index.v1+json';

/**
 * The BlobAccess port's contract (services/origin/client/blobAccess.ts), as one suite that
 * the real access over origins and every double of it run:
 * `describeBlobAccessContract('origins', factory)`. The tests share one cluster and use
 * fresh blobs and repositories each.
 */
export type BlobAccessContractOptions = {
  /**
   * Whether the access can tell the origin whom it acts for (`by`): in process, or over HTTP
   * with a cluster identity the origin trusts. Without one the origin binds sessions to their
   * repository only, and records its caller as the actor.
   */
  readonly knowsOwners: boolean;
};

export const describeBlobAccessContract = (
  name: string,
  factory: BlobAccessFactory,
  options: BlobAccessContractOptions = { knowsOwners: true },
): void => {
  describe(`BlobAccess contract: ${name}`, () => {
    const upstreamIndex = Buffer.from(
      JSON.stringify({ schemaVersion: 2, mediaType: indexType, manifests: [], n: name }),
    );
    const upstream: PullThroughUpstream = {
      namespace: 'contract-hub',
      manifests: new Map([
        ['v1', { bytes: upstreamIndex, mediaType: indexType }],
        [sha256(upstreamIndex), { bytes: upstreamIndex, mediaType: indexType }],
      ]),
    };
    let access: BlobAccess;
    let log: EventLog;
    let cleanup: () => Promise<void>;

    beforeAll(async () => {
      ({ access, log, cleanup } = await factory(upstream));
    });
    afterAll(() => cleanup());

    /** The `BlobUploaded` events of `digest` at or before `position`. */
    const uploadedUpTo = async (digest: Digest, position: Position) => {
      const found: RecordedEvent[] = [];
      for await (const event of log.read(1)) {
        if (event.position > position) break;
        if (event.type === 'BlobUploaded' && event.data.digest === digest) found.push(event);
      }
      return found;
    };

    it('stores a whole blob with put, then stats it and reads it back whole', async () => {
      const blob = blobFixture(70_000);
      const stored = await access.put(blob.digest, blob.content, { repo: freshRepo() });
      expect(stored.size).toBe(blob.size);
      await expect(access.stat(blob.digest)).resolves.toEqual({ size: blob.size });
      const read = await access.get(blob.digest);
      expect(read).toMatchObject({ size: blob.size, start: 0, end: blob.size - 1 });
      expect((await drain(read.stream)).equals(blob.content)).toBe(true);
    });

    it('puts from a stream as from a buffer', async () => {
      const blob = blobFixture(100_000);
      const chunks = [blob.content.subarray(0, 30_000), blob.content.subarray(30_000)];
      const stored = await access.put(blob.digest, body(...chunks), { repo: freshRepo() });
      expect(stored.size).toBe(blob.size);
      expect((await drain((await access.get(blob.digest)).stream)).equals(blob.content)).toBe(true);
    });

    it('records BlobUploaded{digest, size, repo, mediaType} at or before the position a write returns', async () => {
      const repo = freshRepo();
      const put = blobFixture(1_000);
      const { position } = await access.put(put.digest, put.content, {
        repo,
        mediaType: 'application/vnd.example+json',
      });
      expect(position).toBeGreaterThan(0);
      const [event] = await uploadedUpTo(put.digest, position);
      expect(event?.data).toMatchObject({
        digest: put.digest,
        size: put.size,
        repo,
        mediaType: 'application/vnd.example+json',
      });

      const committed = blobFixture(2_000);
      const { id } = await access.startUpload({ repo });
      const done = await access.commitUpload(id, {
        digest: committed.digest,
        repo,
        body: body(committed.content),
      });
      const [upload] = await uploadedUpTo(committed.digest, done.position);
      expect(upload?.data).toMatchObject({ digest: committed.digest, size: 2_000, repo });
    });

    it('uploads in chunks: a URL-safe session id, offsets, status, a commit with a last chunk', async () => {
      const blob = blobFixture(300_000);
      const repo = freshRepo();
      const { id } = await access.startUpload({ repo });
      expect(encodeURIComponent(id)).toBe(id);
      await expect(access.uploadStatus(id)).resolves.toEqual({ size: 0 });
      await expect(
        access.appendUpload(id, body(blob.content.subarray(0, 100_000)), { offset: 0 }),
      ).resolves.toEqual({ size: 100_000 });
      await expect(
        access.appendUpload(id, body(blob.content.subarray(100_000, 250_000)), {
          offset: 100_000,
        }),
      ).resolves.toEqual({ size: 250_000 });
      await expect(access.uploadStatus(id)).resolves.toEqual({ size: 250_000 });
      const done = await access.commitUpload(id, {
        digest: blob.digest,
        repo,
        body: body(blob.content.subarray(250_000)),
      });
      expect(done).toMatchObject({ digest: blob.digest, size: blob.size });
      expect(done.position).toBeGreaterThan(0);
      expect((await drain((await access.get(blob.digest)).stream)).equals(blob.content)).toBe(true);
    });

    it('commits an upload whose bytes all came in chunks', async () => {
      const blob = blobFixture(5_000);
      const repo = freshRepo();
      const { id } = await access.startUpload({ repo });
      await access.appendUpload(id, body(blob.content));
      const done = await access.commitUpload(id, { digest: blob.digest, repo });
      expect(done).toMatchObject({ digest: blob.digest, size: blob.size });
      await expect(access.stat(blob.digest)).resolves.toEqual({ size: blob.size });
    });

    it('refuses a chunk at the wrong offset with RANGE_INVALID, writes nothing, keeps the session', async () => {
      const blob = blobFixture(20_000);
      const repo = freshRepo();
      const { id } = await access.startUpload({ repo });
      await access.appendUpload(id, body(blob.content.subarray(0, 10_000)), { offset: 0 });
      expect(
        await codeOf(
          access.appendUpload(id, body(blob.content.subarray(10_000)), { offset: 9_000 }),
        ),
      ).toBe('RANGE_INVALID');
      await expect(access.uploadStatus(id)).resolves.toEqual({ size: 10_000 });
      await access.appendUpload(id, body(blob.content.subarray(10_000)), { offset: 10_000 });
      const done = await access.commitUpload(id, { digest: blob.digest, repo });
      expect(done.size).toBe(blob.size);
    });

    it('fails a commit or put whose bytes do not match the digest with DIGEST_INVALID; nothing becomes visible', async () => {
      const blob = blobFixture(8_000);
      const claimed = blobFixture(8_000).digest;
      const repo = freshRepo();
      const { id } = await access.startUpload({ repo });
      expect(
        await codeOf(access.commitUpload(id, { digest: claimed, repo, body: body(blob.content) })),
      ).toBe('DIGEST_INVALID');
      expect(await codeOf(access.put(claimed, blob.content, { repo }))).toBe('DIGEST_INVALID');
      await expect(access.stat(claimed)).resolves.toBeUndefined();
      await expect(access.stat(blob.digest)).resolves.toBeUndefined();
    });

    it('answers BLOB_UPLOAD_UNKNOWN for a finished or cancelled session', async () => {
      const blob = blobFixture(1_000);
      const repo = freshRepo();
      const finished = await access.startUpload({ repo });
      await access.commitUpload(finished.id, {
        digest: blob.digest,
        repo,
        body: body(blob.content),
      });
      expect(await codeOf(access.uploadStatus(finished.id))).toBe('BLOB_UPLOAD_UNKNOWN');

      const cancelled = await access.startUpload({ repo });
      await access.appendUpload(cancelled.id, body(blob.content));
      await access.cancelUpload(cancelled.id);
      expect(await codeOf(access.uploadStatus(cancelled.id))).toBe('BLOB_UPLOAD_UNKNOWN');
      expect(await codeOf(access.appendUpload(cancelled.id, body(blob.content)))).toBe(
        'BLOB_UPLOAD_UNKNOWN',
      );
    });

    it('reads byte ranges: end inclusive, an end past the blob clamped, an open end', async () => {
      const blob = blobFixture(50_000);
      await access.put(blob.digest, blob.content, { repo: freshRepo() });
      const part = await access.get(blob.digest, { start: 10, end: 19 });
      expect(part).toMatchObject({ size: blob.size, start: 10, end: 19 });
      expect((await drain(part.stream)).equals(blob.content.subarray(10, 20))).toBe(true);
      const clamped = await access.get(blob.digest, { start: 49_990, end: 60_000 });
      expect(clamped).toMatchObject({ size: blob.size, start: 49_990, end: 49_999 });
      expect((await drain(clamped.stream)).equals(blob.content.subarray(49_990))).toBe(true);
      const open = await access.get(blob.digest, { start: 40_000 });
      expect(open).toMatchObject({ start: 40_000, end: 49_999 });
      expect((await drain(open.stream)).equals(blob.content.subarray(40_000))).toBe(true);
    });

    it('refuses a range that starts past the blob with RANGE_INVALID', async () => {
      const blob = blobFixture(1_000);
      await access.put(blob.digest, blob.content, { repo: freshRepo() });
      expect(await codeOf(access.get(blob.digest, { start: 1_000 }))).toBe('RANGE_INVALID');
    });

    it('knows no blob it was never given: stat undefined, get BLOB_UNKNOWN', async () => {
      const absent = blobFixture(10).digest;
      await expect(access.stat(absent)).resolves.toBeUndefined();
      expect(await codeOf(access.get(absent))).toBe('BLOB_UNKNOWN');
    });

    it('stores and reads an empty blob (end = start - 1)', async () => {
      const empty = sha256(Buffer.alloc(0));
      await expect(
        access.put(empty, Buffer.alloc(0), { repo: freshRepo() }),
      ).resolves.toMatchObject({ size: 0 });
      await expect(access.stat(empty)).resolves.toEqual({ size: 0 });
      const read = await access.get(empty);
      expect(read).toMatchObject({ size: 0, start: 0, end: -1 });
      expect((await drain(read.stream)).length).toBe(0);
    });

    it('stores a blob it already holds again, harmlessly', async () => {
      const blob = blobFixture(4_000);
      await access.put(blob.digest, blob.content, { repo: freshRepo() });
      const again = await access.put(blob.digest, blob.content, { repo: freshRepo() });
      expect(again.size).toBe(blob.size);
      expect((await drain((await access.get(blob.digest)).stream)).equals(blob.content)).toBe(true);
    });

    it('pulls a manifest through by tag and by digest, and holds it as a blob of the repository', async () => {
      const repo = `${upstream.namespace}/${freshRepo()}` as RepoName;
      const pulled = await access.pullManifest(repo, 'v1');
      expect(pulled).toMatchObject({
        digest: sha256(upstreamIndex),
        mediaType: indexType,
        size: upstreamIndex.length,
      });
      expect(pulled.bytes.equals(upstreamIndex)).toBe(true);
      await expect(access.stat(pulled.digest)).resolves.toEqual({ size: upstreamIndex.length });
      const read = await access.get(pulled.digest);
      expect((await drain(read.stream)).equals(upstreamIndex)).toBe(true);
      const uploaded: RecordedEvent[] = [];
      for await (const event of log.read(1)) {
        if (event.type === 'BlobUploaded' && event.data.digest === pulled.digest) {
          uploaded.push(event);
        }
      }
      expect(uploaded.map((e) => e.data)).toContainEqual(
        expect.objectContaining({ repo, mediaType: indexType }),
      );
      const byDigest = await access.pullManifest(repo, sha256(upstreamIndex));
      expect(byDigest.digest).toBe(pulled.digest);
      expect(byDigest.bytes.equals(upstreamIndex)).toBe(true);
    });

    it('answers MANIFEST_UNKNOWN outside the pull-through namespace and for what the upstream lacks', async () => {
      expect(await codeOf(access.pullManifest(freshRepo(), 'v1'))).toBe('MANIFEST_UNKNOWN');
      const repo = `${upstream.namespace}/${freshRepo()}` as RepoName;
      expect(await codeOf(access.pullManifest(repo, 'nope'))).toBe('MANIFEST_UNKNOWN');
    });

    it('answers the digest a tag points at upstream', async () => {
      const repo = `${upstream.namespace}/${freshRepo()}` as RepoName;
      await expect(access.upstreamDigest(repo, 'v1' as Tag)).resolves.toBe(sha256(upstreamIndex));
      expect(await codeOf(access.upstreamDigest(repo, 'nope' as Tag))).toBe('MANIFEST_UNKNOWN');
      // Outside the pull-through namespace: no upstream to ask.
      await expect(access.upstreamDigest(freshRepo(), 'v1' as Tag)).resolves.toBeUndefined();
    });

    it('binds a session to its repository and owner: another one does not find it', async () => {
      const blob = blobFixture(4_000);
      const repo = freshRepo();
      const other = freshRepo();
      const alice = { actor: 'user:alice', client: '10.0.0.1' };
      const bob = { actor: 'user:bob' };
      const { id } = await access.startUpload({ repo, by: alice });
      const mine = { repo, by: alice };
      await access.appendUpload(id, body(blob.content.subarray(0, 1_000)), { binding: mine });
      const strangers = [
        { repo: other, by: alice },
        ...(options.knowsOwners ? [{ repo, by: bob }] : []),
      ];
      for (const binding of strangers) {
        expect(
          await codeOf(access.appendUpload(id, body(blob.content), { binding, offset: 1_000 })),
        ).toBe('BLOB_UPLOAD_UNKNOWN');
        expect(await codeOf(access.uploadStatus(id, binding))).toBe('BLOB_UPLOAD_UNKNOWN');
        expect(await codeOf(access.cancelUpload(id, binding))).toBe('BLOB_UPLOAD_UNKNOWN');
        expect(
          await codeOf(
            access.commitUpload(id, {
              digest: blob.digest,
              repo: binding.repo,
              by: binding.by,
              body: body(blob.content.subarray(1_000)),
            }),
          ),
        ).toBe('BLOB_UPLOAD_UNKNOWN');
      }
      await expect(access.uploadStatus(id, mine)).resolves.toEqual({ size: 1_000 });
      const done = await access.commitUpload(id, {
        digest: blob.digest,
        repo,
        by: alice,
        body: body(blob.content.subarray(1_000)),
      });
      const [event] = await uploadedUpTo(blob.digest, done.position);
      expect(event?.data).toMatchObject({ repo });
      if (options.knowsOwners) {
        expect(event?.metadata).toMatchObject({ actor: 'user:alice', client: '10.0.0.1' });
      }
    });

    it('starts independent sessions', async () => {
      const repo = freshRepo();
      const [a, b] = await Promise.all([
        access.startUpload({ repo }),
        access.startUpload({ repo }),
      ]);
      expect(a.id).not.toBe(b.id);
      await access.appendUpload(a.id, body(randomBytes(10)));
      await expect(access.uploadStatus(b.id)).resolves.toEqual({ size: 0 });
      await access.cancelUpload(a.id);
      await access.cancelUpload(b.id);
    });
  });
};

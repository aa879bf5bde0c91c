import { createHash, randomUUID } from 'node:crypto';
import { createReadStream, createWriteStream } from 'node:fs';
import { mkdir, rename, rm, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import type { Digest, EventLog } from '../../domain';
import { ShoalError, digestAlgorithm } from '../../domain';
import type { BlobAccess } from '../../services/origin/client/blobAccess';
import type { Attribution, WriterContext } from '../../services/shared/events';
import { attributedWriter, newEvent } from '../../services/shared/events';
import { sha256 } from '../fixtures/blobs';

/**
 * A `BlobAccess` test double on a temporary directory: one "origin", no ring, no write-back.
 * It keeps the contract the proxy relies on — sessions, offsets checked before anything is
 * written, the digest verified before a blob becomes visible, `BlobUploaded{repo}` appended
 * on every commit — so proxy tests run without the origin service. The BlobAccess contract
 * (test/contracts/blobAccessContract.ts) holds it to what the real access over origins does.
 */
export const createFsBlobAccess = async (deps: {
  dir: string;
  log: EventLog;
  writer: WriterContext;
  /**
   * The upstream of pull-through namespaces, as an origin's `registry` backend would fetch
   * from it: a manifest's bytes and media type, or undefined when it has none. Absent: no
   * repository is pulled through (`pullManifest` fails with `MANIFEST_UNKNOWN`). `method` is
   * `HEAD` when a tag's digest is asked (`upstreamDigest`), else `GET`.
   */
  upstream?: (
    repo: string,
    reference: string,
    method: 'GET' | 'HEAD',
  ) => Promise<{ bytes: Buffer; mediaType: string } | undefined>;
  /** Whether `repo` is a pull-through namespace (`upstreamDigest`); default: every one. */
  pullsThrough?: (repo: string) => boolean;
}): Promise<BlobAccess> => {
  const uploads = join(deps.dir, 'uploads');
  const blobs = join(deps.dir, 'blobs');
  await mkdir(uploads, { recursive: true });
  await mkdir(blobs, { recursive: true });

  const sessionPath = (id: string) => {
    if (!/^[A-Za-z0-9_-]{1,128}$/.test(id)) {
      throw new ShoalError('BLOB_UPLOAD_UNKNOWN', 'unknown upload session');
    }
    return join(uploads, id);
  };
  const blobPath = (digest: Digest) => join(blobs, digest.replace(':', '-'));
  /** Each session's repository and owner: another one does not find it. */
  const bindings = new Map<string, { repo: string; owner?: string }>();
  const checkBinding = (id: string, binding?: { repo?: string; by?: Attribution }) => {
    const bound = bindings.get(id);
    if (bound === undefined || binding === undefined) return;
    const owner = binding.by?.actor;
    if (
      (binding.repo !== undefined && binding.repo !== bound.repo) ||
      (owner !== undefined && bound.owner !== undefined && owner !== bound.owner)
    ) {
      throw new ShoalError('BLOB_UPLOAD_UNKNOWN', `no upload session ${id}`);
    }
  };
  const sizeOf = async (path: string) => {
    try {
      return (await stat(path)).size;
    } catch {
      return undefined;
    }
  };
  const sessionSize = async (id: string) => {
    const size = await sizeOf(sessionPath(id));
    if (size === undefined) throw new ShoalError('BLOB_UPLOAD_UNKNOWN', `no upload session ${id}`);
    return size;
  };
  const hashFile = async (path: string, digest: Digest) => {
    const hash = createHash(digestAlgorithm(digest));
    for await (const chunk of createReadStream(path)) hash.update(chunk as Buffer);
    return `${digestAlgorithm(digest)}:${hash.digest('hex')}`;
  };
  /** Verifies a complete file and moves it under its digest; then the event. */
  const commitFile = async (
    path: string,
    digest: Digest,
    options: { repo: string; mediaType?: string; by?: Attribution },
  ) => {
    const actual = await hashFile(path, digest);
    if (actual !== digest) {
      await rm(path, { force: true });
      throw new ShoalError('DIGEST_INVALID', `content digest is ${actual}, not ${digest}`, {
        detail: { digest },
      });
    }
    const size = (await stat(path)).size;
    await rename(path, blobPath(digest));
    const position = await deps.log.append([
      newEvent(attributedWriter(deps.writer, options.by), 'BlobUploaded', {
        digest,
        size,
        repo: options.repo,
        ...(options.mediaType !== undefined && { mediaType: options.mediaType }),
      }),
    ]);
    return { digest, size, position };
  };

  return {
    startUpload: async ({ repo, by }) => {
      const id = randomUUID();
      await writeFile(sessionPath(id), '');
      bindings.set(id, { repo, ...(by !== undefined && { owner: by.actor }) });
      return { id };
    },
    appendUpload: async (id, body, options = {}) => {
      const size = await sessionSize(id);
      checkBinding(id, options.binding);
      if (options.offset !== undefined && options.offset !== size) {
        throw new ShoalError(
          'RANGE_INVALID',
          `chunk starts at ${options.offset}; the session has ${size} bytes`,
          { detail: { size } },
        );
      }
      await pipeline(body, createWriteStream(sessionPath(id), { flags: 'a' }));
      return { size: await sessionSize(id) };
    },
    uploadStatus: async (id, binding) => {
      const size = await sessionSize(id);
      checkBinding(id, binding);
      return { size };
    },
    commitUpload: async (id, options) => {
      await sessionSize(id);
      checkBinding(id, options);
      if (options.body !== undefined) {
        await pipeline(options.body, createWriteStream(sessionPath(id), { flags: 'a' }));
      }
      const done = await commitFile(sessionPath(id), options.digest, options);
      bindings.delete(id);
      return done;
    },
    cancelUpload: async (id, binding) => {
      await sessionSize(id);
      checkBinding(id, binding);
      await rm(sessionPath(id), { force: true });
      bindings.delete(id);
    },
    put: async (digest, body, options) => {
      const path = join(uploads, `put-${randomUUID()}`);
      await pipeline(Buffer.isBuffer(body) ? Readable.from([body]) : body, createWriteStream(path));
      const { size, position } = await commitFile(path, digest, options);
      return { size, position };
    },
    pullManifest: async (repo, reference) => {
      const found = await deps.upstream?.(repo, reference, 'GET');
      if (found === undefined) {
        throw new ShoalError('MANIFEST_UNKNOWN', `${repo} has no upstream manifest ${reference}`);
      }
      const digest = (reference.includes(':') ? reference : sha256(found.bytes)) as Digest;
      const path = join(uploads, `pull-${randomUUID()}`);
      await writeFile(path, found.bytes);
      await commitFile(path, digest, { repo, mediaType: found.mediaType });
      return { digest, mediaType: found.mediaType, size: found.bytes.length, bytes: found.bytes };
    },
    upstreamDigest: async (repo, tag) => {
      if (deps.upstream === undefined || deps.pullsThrough?.(repo) === false) return undefined;
      const found = await deps.upstream(repo, tag, 'HEAD');
      if (found === undefined) {
        throw new ShoalError('MANIFEST_UNKNOWN', `${repo} has no upstream tag ${tag}`);
      }
      return sha256(found.bytes);
    },
    stat: async (digest) => {
      const size = await sizeOf(blobPath(digest));
      return size === undefined ? undefined : { size };
    },
    get: async (digest, range) => {
      const size = await sizeOf(blobPath(digest));
      if (size === undefined) throw new ShoalError('BLOB_UNKNOWN', `no blob ${digest}`);
      // 1 MiB reads: with Node's 64 KiB default, serving a layer is 2-3 times slower.
      const highWaterMark = 1024 * 1024;
      if (range === undefined) {
        const whole = { start: 0, end: size - 1 };
        return { stream: createReadStream(blobPath(digest), { highWaterMark }), size, ...whole };
      }
      const end = Math.min(range.end ?? size - 1, size - 1);
      if (range.start >= size || end < range.start) {
        throw new ShoalError('RANGE_INVALID', `range outside a ${size}-byte blob`);
      }
      return {
        stream: createReadStream(blobPath(digest), { start: range.start, end, highWaterMark }),
        size,
        start: range.start,
        end,
      };
    },
  };
};

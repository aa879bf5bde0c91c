import { Readable } from 'node:stream';
import type { ByteSource, Digest } from '../../domain';
import { ShoalError, isShoalError, orThrow, parseDigest, parseRepoName } from '../../domain';
import type { Activity } from './activity';
import type { BlobService } from './blobService';
import type { OriginClient } from './client/originClient';
import type { Binding, RequestBody } from './client/originClient';
import type { RingView } from './ringView';
import type { SessionBinding, UploadSessions } from './uploadSessions';

/**
 * This origin as an `OriginClient` for a caller in the same process (the proxy of
 * `shoal dev`): the same operations, checks and errors as the internal HTTP API, without
 * the loopback hop. That hop costs every pushed and pulled byte a socket write, a socket
 * read, HTTP parsing and a 64 KiB buffer for the garbage collector, all on the one thread
 * that also serves the client. Errors that are not `ShoalError`s become `INTERNAL`, as the
 * HTTP API would answer them.
 */
export const createLocalOriginClient = (deps: {
  readonly url: string;
  readonly uploads: UploadSessions;
  readonly blobs: BlobService;
  readonly ring: RingView;
  readonly activity: Pick<Activity, 'begin'>;
  readonly onBytesOut: (n: number) => void;
}): OriginClient => {
  const { uploads, blobs, ring, activity } = deps;

  /** Runs an operation, translating foreign errors as the HTTP edge does. */
  const call = async <T>(fn: () => Promise<T>): Promise<T> => {
    try {
      return await fn();
    } catch (error) {
      if (isShoalError(error)) throw error;
      throw new ShoalError('INTERNAL', 'origin operation failed', { cause: error });
    }
  };

  /** A body as the services take it; a signal that aborts destroys a stream body. */
  const sourceOf = (body: RequestBody, signal?: AbortSignal): ByteSource | undefined => {
    if (body === undefined) return undefined;
    if (Buffer.isBuffer(body)) return body.length === 0 ? undefined : Readable.from([body]);
    signal?.addEventListener('abort', () => body.destroy(signal.reason as Error), { once: true });
    return body;
  };

  /** Reports a transfer to the activity tracker while `fn` runs. */
  const transfer = async <T>(fn: () => Promise<T>): Promise<T> => {
    const end = activity.begin();
    try {
      return await call(fn);
    } finally {
      end();
    }
  };

  const digestOf = (text: string): Digest => orThrow(parseDigest(text));
  /** A client's binding as the sessions check it: the repository and the owner's actor. */
  const bindingOf = (binding: Binding): SessionBinding => ({
    repo: binding.repo,
    ...(binding.by !== undefined && { owner: binding.by.actor }),
  });

  return {
    url: deps.url,

    startUpload: ({ repo, by }) =>
      call(async () => uploads.start(orThrow(parseRepoName(repo)), by)),

    appendUpload: (id, body, options = {}) =>
      transfer(async () => {
        const source = sourceOf(body, options.signal) ?? Readable.from([]);
        const status = await uploads.append(id, source, {
          ...(options.offset !== undefined && { offset: options.offset }),
          ...(options.binding !== undefined && { binding: bindingOf(options.binding) }),
        });
        return { size: status.size };
      }),

    uploadStatus: (id, binding) =>
      call(async () => {
        const { size, repo } = await uploads.status(id, binding && bindingOf(binding));
        return { size, repo };
      }),

    commitUpload: (id, options) =>
      transfer(async () => {
        const body = sourceOf(options.body, options.signal);
        const done = await uploads.commit(id, {
          digest: digestOf(options.digest),
          ...(options.repo !== undefined && { repo: orThrow(parseRepoName(options.repo)) }),
          ...(options.mediaType !== undefined && { mediaType: options.mediaType }),
          ...(body !== undefined && { body }),
          ...(options.by !== undefined && { by: options.by }),
        });
        return { digest: done.digest, size: done.size, position: done.position };
      }),

    cancelUpload: (id, binding) => call(() => uploads.cancel(id, binding && bindingOf(binding))),

    putBlob: (digest, body, options = {}) =>
      transfer(async () => {
        const size = Buffer.isBuffer(body) ? body.length : options.size;
        const done = await blobs.put(
          digestOf(digest),
          sourceOf(body, options.signal) ?? Readable.from([]),
          {
            ...(options.repo !== undefined && { repo: orThrow(parseRepoName(options.repo)) }),
            ...(options.mediaType !== undefined && { mediaType: options.mediaType }),
            ...(size !== undefined && { size }),
            ...(options.replicaOf !== undefined && { replicaOf: options.replicaOf }),
            ...(options.by !== undefined && { by: options.by }),
          },
        );
        return {
          digest: done.digest,
          size: done.size,
          ...(done.position !== undefined && { position: done.position }),
        };
      }),

    statBlob: (digest, options = {}) =>
      call(() =>
        blobs.stat(digestOf(digest), {
          local: options.local === true,
          ...(options.repo !== undefined && { repo: options.repo }),
        }),
      ),

    getBlob: (digest, options = {}) =>
      call(async () => {
        const end = activity.begin();
        try {
          const read = await blobs.read(digestOf(digest), options.range, {
            local: options.local === true,
            ...(options.repo !== undefined && { repo: options.repo }),
          });
          const { stream } = read;
          stream.once('end', () => deps.onBytesOut(read.end - read.start + 1));
          stream.once('close', end);
          options.signal?.addEventListener('abort', () => stream.destroy(), { once: true });
          return { stream, size: read.size, start: read.start, end: read.end };
        } catch (error) {
          end();
          throw error;
        }
      }),

    upstreamDigest: (repo, tag) =>
      call(async () => {
        const digest = await blobs.upstreamDigest(orThrow(parseRepoName(repo)), tag);
        return digest === undefined ? {} : { digest };
      }),

    pullManifest: (repo, reference) =>
      call(async () => {
        const pulled = await blobs.pullManifest(orThrow(parseRepoName(repo)), reference);
        return {
          digest: pulled.digest,
          mediaType: pulled.mediaType,
          size: pulled.size,
          bytes: pulled.bytes,
          position: pulled.position,
        };
      }),

    deleteBlob: (digest) => call(() => blobs.remove(digestOf(digest))),

    metainfo: (digest) => call(() => blobs.metainfo(digestOf(digest))),

    ring: (digest) =>
      call(async () => {
        const members = await ring.members();
        const owners =
          digest === undefined ? undefined : (await ring.owners(digestOf(digest))).map((m) => m.id);
        return {
          self: ring.selfId,
          replicas: ring.replicas,
          members,
          ...(owners !== undefined && { owners }),
        };
      }),

    close: async () => undefined,
  };
};

import type { Clock, Digest, EventLog, Position, RecordedEvent } from '../../domain';
import {
  ShoalError,
  blobStream,
  isShoalError,
  linkedAt,
  manifestLiveAt,
  manifestStream,
  storedAt,
} from '../../domain';
import type { Attribution, WriterContext } from '../shared/events';
import { attributedWriter, newEvent } from '../shared/events';

/** Children of a manifest being pushed: blobs (config, layers, its own bytes) and manifests. */
export type Children = { readonly blobs: readonly Digest[]; readonly manifests: readonly Digest[] };

/** How many times a mount re-reads the blob's stream when a concurrent append moved it. */
const mountAttempts = 8;

/**
 * The proxy's half of GC's safety (services/gc/collector.ts has the other): before a manifest
 * is recorded, every child it references gets an event on the child's own stream
 * (`BlobReferenced`, `ManifestReferenced`), then each stream is read back: the child must
 * still be there at our event (no collection, deletion or unlink came first). A GC removal
 * decided on an older version of that stream then fails its compare-and-swap; one that came
 * first is seen here, and the push fails (`MANIFEST_BLOB_UNKNOWN`) instead of recording a
 * manifest whose content is gone. `ManifestPushed` must follow within `windowMs` of the
 * references (GC keeps anything referenced within its grace window, at least 4 × this).
 */
export const createReferenceGuard = (deps: {
  readonly log: EventLog;
  readonly writer: WriterContext;
  readonly clock: Clock;
  readonly windowMs: number;
}) => {
  const { log, writer, clock, windowMs } = deps;

  /** Where our event sits in a stream and whether the child was there just before it. */
  const present = (
    events: readonly RecordedEvent[],
    id: string,
    check: (events: readonly RecordedEvent[], position: Position) => boolean,
  ): boolean => {
    const ours = events.find((e) => e.id === id);
    return ours !== undefined && check(events, ours.position);
  };

  return {
    /**
     * References `children` from manifest `digest` of `repo`; resolves with the time of the
     * references (pass it to `fresh` just before appending `ManifestPushed`).
     */
    reference: async (
      repo: string,
      digest: Digest,
      children: Children,
      /** Whom the push is for (the events' actor); none: the proxy's own writer. */
      by?: Attribution,
    ): Promise<number> => {
      const at = clock.now();
      const as = by === undefined ? writer : attributedWriter(writer, by);
      const blobEvents = children.blobs.map((blob) =>
        newEvent(as, 'BlobReferenced', { digest: blob, repo, manifest: digest }),
      );
      const manifestEvents = children.manifests.map((child) =>
        newEvent(as, 'ManifestReferenced', { repo, digest: child, by: digest }),
      );
      if (blobEvents.length + manifestEvents.length === 0) return at;
      await log.append([...blobEvents, ...manifestEvents]);
      const missing: string[] = [];
      await Promise.all([
        ...blobEvents.map(async (event) => {
          const events = await log.readStream(blobStream(event.data.digest));
          const ok = present(
            events,
            event.id,
            (all, position) => storedAt(all, position) && linkedAt(all, repo, position),
          );
          if (!ok) missing.push(event.data.digest);
        }),
        ...manifestEvents.map(async (event) => {
          const events = await log.readStream(manifestStream(repo, event.data.digest));
          if (!present(events, event.id, manifestLiveAt)) missing.push(event.data.digest);
        }),
      ]);
      if (missing.length > 0) {
        throw new ShoalError(
          'MANIFEST_BLOB_UNKNOWN',
          `manifest references ${missing.length} blob(s) or manifest(s) no longer in ${repo} ` +
            `(garbage collected): ${missing.slice(0, 3).join(', ')}; push them again`,
          { detail: { name: repo, digests: missing.slice(0, 20) } },
        );
      }
      return at;
    },

    /** Fails (retriable) when references made at `at` are too old to record a manifest on. */
    fresh: (at: number): void => {
      const age = clock.now() - at;
      if (age > windowMs) {
        throw new ShoalError(
          'SERVICE_UNAVAILABLE',
          `the manifest's references are ${age} ms old (the limit is ${windowMs} ms, so GC ` +
            'cannot have missed them); try the push again',
        );
      }
    },

    /**
     * A cross-repository mount as a compare-and-swap on the blob's stream: links `digest` to
     * `repo` (`BlobUploaded`, no bytes move) only while `from` links it and it is stored.
     * Resolves with the position, or undefined when the blob cannot be mounted.
     */
    mount: async (
      repo: string,
      from: string,
      digest: Digest,
      beforeAppend: (size: number) => Promise<void>,
      /** Whom the mount is for (the event's actor); none: the proxy's own writer. */
      by?: Attribution,
    ): Promise<Position | undefined> => {
      for (let attempt = 0; attempt < mountAttempts; attempt++) {
        const events = await log.readStream(blobStream(digest));
        const last = events[events.length - 1];
        if (last === undefined || !linkedAt(events, from, Infinity)) return undefined;
        if (!storedAt(events, Infinity)) return undefined;
        const upload = [...events].reverse().find((e) => e.type === 'BlobUploaded');
        if (upload?.type !== 'BlobUploaded') return undefined;
        await beforeAppend(upload.data.size);
        try {
          return await log.append(
            [
              newEvent(by === undefined ? writer : attributedWriter(writer, by), 'BlobUploaded', {
                digest,
                size: upload.data.size,
                repo,
                ...(upload.data.mediaType !== undefined && { mediaType: upload.data.mediaType }),
              }),
            ],
            { expectedVersion: last.streamVersion },
          );
        } catch (error) {
          if (!isShoalError(error, 'WRONG_EXPECTED_VERSION')) throw error;
        }
      }
      return undefined;
    },
  };
};

export type ReferenceGuard = ReturnType<typeof createReferenceGuard>;

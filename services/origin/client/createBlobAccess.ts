import type { Digest, ProjectionStore } from '../../../domain';
import { ShoalError, isShoalError, parseDigest } from '../../../domain';
import { owners as ownersOf, rankMembers } from '../../../domain/placement';
import type { RingMemberDoc } from '../../../projections';
import { placementPartitions, placementProjection } from '../../../projections';
import { parseSessionId } from './sessionId';
import type { BlobAccess } from './blobAccess';
import type { OriginClient } from './originClient';
import { createOriginClient } from './originClient';
import type { ClientIdentity } from '../../shared/security/clientIdentity';

/** One ring member as a client sees it. */
export type OriginEndpoint = { readonly id: string; readonly url: string };

/** The current ring members; called on every operation (cache inside when it is costly). */
export type RingSource = () => readonly OriginEndpoint[] | Promise<readonly OriginEndpoint[]>;

export type BlobAccessOptions = {
  readonly ring: RingSource;
  /** R: how many members own each blob (the origins' `replicas`). */
  readonly replicas: number;
  /** Start upload sessions on this origin when it is a member (e.g. the co-located one). */
  readonly preferredOrigin?: string;
  /** Idle timeout of one request to an origin (default 60 s). */
  readonly timeoutMs?: number;
  /** For tests: picks where sessions start when there is no preferred origin. */
  readonly random?: () => number;
  /**
   * A client for a member served in this process (its `RunningOrigin.client`), which skips
   * the HTTP hop; undefined: reach it over HTTP, as every other member.
   */
  readonly connect?: (endpoint: OriginEndpoint) => OriginClient | undefined;
  /** Who this process is to the origins (their internal API takes cluster identities). */
  readonly identity?: ClientIdentity;
};

/**
 * `BlobAccess` over the origins' internal HTTP API: upload sessions start on one member and
 * are routed by the origin id their id carries; whole-blob puts go to the digest's first
 * owner; reads try the owners in rendezvous order (an owner that lacks the blob fetches it
 * from a peer or the backend). Members that cannot be reached are skipped
 * (`SERVICE_UNAVAILABLE` only when none answers).
 */
export const createBlobAccess = (
  options: BlobAccessOptions,
): BlobAccess & { readonly close: () => Promise<void> } => {
  const clients = new Map<string, OriginClient>();
  const random = options.random ?? Math.random;
  const clientFor = (endpoint: OriginEndpoint): OriginClient => {
    const local = options.connect?.(endpoint);
    if (local !== undefined) return local;
    let client = clients.get(endpoint.url);
    if (client === undefined) {
      client = createOriginClient(endpoint.url, {
        ...(options.timeoutMs !== undefined && { timeoutMs: options.timeoutMs }),
        ...(options.identity !== undefined && { identity: options.identity }),
      });
      clients.set(endpoint.url, client);
    }
    return client;
  };

  const members = async (): Promise<readonly OriginEndpoint[]> => {
    const ring = await options.ring();
    if (ring.length === 0) {
      throw new ShoalError('SERVICE_UNAVAILABLE', 'no origin has joined the ring yet');
    }
    return ring;
  };

  const owners = async (digest: Digest): Promise<OriginEndpoint[]> => {
    const ring = await members();
    const byId = new Map(ring.map((m) => [m.id, m]));
    return ownersOf(
      digest,
      ring.map((m) => m.id),
      options.replicas,
    ).map((id) => byId.get(id) as OriginEndpoint);
  };

  /** The origin holding a session; `BLOB_UPLOAD_UNKNOWN` when the id names none. */
  const sessionOrigin = async (id: string): Promise<OriginClient> => {
    const parsed = parseSessionId(id);
    const endpoint = parsed && (await members()).find((m) => m.id === parsed.originId);
    if (endpoint === undefined) {
      throw new ShoalError('BLOB_UPLOAD_UNKNOWN', `upload ${id.slice(0, 80)} is not known`);
    }
    return clientFor(endpoint);
  };

  /**
   * Tries `fn` on each endpoint in order until one answers; moves on when one cannot be
   * reached or (for reads) lacks the blob.
   */
  const firstAnswer = async <T>(
    endpoints: readonly OriginEndpoint[],
    fn: (client: OriginClient) => Promise<T>,
    moveOn: (error: unknown) => boolean,
  ): Promise<T> => {
    let last: unknown;
    for (const endpoint of endpoints) {
      try {
        return await fn(clientFor(endpoint));
      } catch (error) {
        if (!moveOn(error)) throw error;
        last = error;
      }
    }
    throw last ?? new ShoalError('SERVICE_UNAVAILABLE', 'no origin to ask');
  };

  const unreachable = (error: unknown) => isShoalError(error, 'SERVICE_UNAVAILABLE');
  const missingOrUnreachable = (error: unknown) =>
    unreachable(error) || isShoalError(error, 'BLOB_UNKNOWN');

  /**
   * Pull-through by tag or digest: the digest (hence its owners) is known only after the
   * fetch, so the first origin that answers is asked, in an order fixed by the reference:
   * concurrent pulls of one reference through several proxies meet on one origin.
   */
  const byReference = async (repo: string, reference: string): Promise<OriginEndpoint[]> => {
    const ring = await members();
    const byId = new Map(ring.map((m) => [m.id, m]));
    return rankMembers(
      `${repo}@${reference}`,
      ring.map((m) => m.id),
    ).map((id) => byId.get(id) as OriginEndpoint);
  };

  return {
    startUpload: async ({ repo, by }) => {
      const ring = await members();
      const preferred = ring.filter((m) => m.id === options.preferredOrigin);
      // Spread sessions over the members; the digest (hence the owners) is not known yet.
      const rest = rankMembers(
        String(random()),
        ring.filter((m) => m.id !== options.preferredOrigin).map((m) => m.id),
      ).map((id) => ring.find((m) => m.id === id) as OriginEndpoint);
      return firstAnswer(
        [...preferred, ...rest],
        async (client) => ({
          id: (await client.startUpload({ repo, ...(by !== undefined && { by }) })).id,
        }),
        unreachable,
      );
    },

    appendUpload: async (id, body, opts = {}) =>
      (await sessionOrigin(id)).appendUpload(id, body, opts),

    uploadStatus: async (id, binding) => {
      const { size } = await (await sessionOrigin(id)).uploadStatus(id, binding);
      return { size };
    },

    commitUpload: async (id, opts) => {
      const done = await (
        await sessionOrigin(id)
      ).commitUpload(id, {
        digest: opts.digest,
        repo: opts.repo,
        ...(opts.by !== undefined && { by: opts.by }),
        ...(opts.mediaType !== undefined && { mediaType: opts.mediaType }),
        ...(opts.body !== undefined && { body: opts.body }),
        ...(opts.body !== undefined && opts.length !== undefined && { length: opts.length }),
      });
      return { digest: done.digest as Digest, size: done.size, position: done.position };
    },

    cancelUpload: async (id, binding) => (await sessionOrigin(id)).cancelUpload(id, binding),

    put: async (digest, body, opts) => {
      const targets = await owners(digest);
      // A stream can be sent once; a buffer may be retried on the next owner.
      const candidates = Buffer.isBuffer(body) ? targets : targets.slice(0, 1);
      const done = await firstAnswer(
        candidates,
        (client) =>
          client.putBlob(digest, body, {
            repo: opts.repo,
            ...(opts.mediaType !== undefined && { mediaType: opts.mediaType }),
            ...(opts.size !== undefined && { size: opts.size }),
            ...(opts.by !== undefined && { by: opts.by }),
          }),
        unreachable,
      );
      if (done.position === undefined) {
        throw new ShoalError('INTERNAL', 'origin stored the blob without a log position');
      }
      return { size: done.size, position: done.position };
    },

    stat: async (digest, options = {}) => {
      try {
        return await firstAnswer(
          await owners(digest),
          async (client) => {
            const found = await client.statBlob(digest, options);
            if (found === undefined) throw new ShoalError('BLOB_UNKNOWN', `${digest} not here`);
            return found;
          },
          missingOrUnreachable,
        );
      } catch (error) {
        if (isShoalError(error, 'BLOB_UNKNOWN')) return undefined;
        throw error;
      }
    },

    get: async (digest, range, options = {}) => {
      const read = await firstAnswer(
        await owners(digest),
        (client) =>
          client.getBlob(digest, {
            ...(range !== undefined && { range }),
            ...(options.repo !== undefined && { repo: options.repo }),
          }),
        missingOrUnreachable,
      );
      return { stream: read.stream, size: read.size, start: read.start, end: read.end };
    },

    pullManifest: async (repo, reference) => {
      const pulled = await firstAnswer(
        await byReference(repo, reference),
        (client) => client.pullManifest(repo, reference),
        unreachable,
      );
      const digest = parseDigest(pulled.digest);
      if (!digest.ok) throw new ShoalError('INTERNAL', 'origin pulled a manifest without a digest');
      return {
        digest: digest.value,
        mediaType: pulled.mediaType,
        size: pulled.size,
        bytes: pulled.bytes,
      };
    },

    upstreamDigest: async (repo, tag) => {
      // Asked of the origin a pull of the tag goes to: a move found is pulled there.
      const answer = await firstAnswer(
        await byReference(repo, tag),
        (client) => client.upstreamDigest(repo, tag),
        unreachable,
      );
      if (answer.digest === undefined) return undefined;
      const digest = parseDigest(answer.digest);
      if (!digest.ok) throw new ShoalError('INTERNAL', 'origin answered a tag with no digest');
      return digest.value;
    },

    close: async () => {
      await Promise.all([...clients.values()].map((c) => c.close()));
      clients.clear();
    },
  };
};

/** A fixed ring, e.g. from a config file listing origin ids and URLs. */
export const staticRing =
  (origins: readonly OriginEndpoint[]): RingSource =>
  () =>
    origins;

/**
 * The ring from the placement projection in a ProjectionStore (the caller runs the
 * `placement` projection, e.g. in its projection runner): the same view the origins have.
 */
export const ringFromPlacement =
  (store: ProjectionStore): RingSource =>
  async () => {
    const out: OriginEndpoint[] = [];
    let after: string | undefined;
    for (;;) {
      const rows = await store.list<RingMemberDoc>(
        placementProjection.name,
        placementPartitions.ring,
        { ...(after !== undefined && { after }), limit: 1000 },
      );
      for (const row of rows) out.push({ id: row.id, url: row.doc.address });
      if (rows.length < 1000) return out;
      after = rows[rows.length - 1]?.id;
    }
  };

/**
 * The ring as one origin reports it (`GET /internal/ring`), cached for `ttlMs`: for a client
 * that has no access to the log.
 */
export const ringFromOrigin = (
  url: string,
  options: { ttlMs?: number; identity?: ClientIdentity } = {},
): RingSource => {
  const client = createOriginClient(url, {
    ...(options.identity !== undefined && { identity: options.identity }),
  });
  const ttl = options.ttlMs ?? 2000;
  let cached: { at: number; ring: OriginEndpoint[] } | undefined;
  return async () => {
    if (cached === undefined || Date.now() - cached.at > ttl) {
      const info = await client.ring();
      cached = { at: Date.now(), ring: info.members.map((m) => ({ id: m.id, url: m.address })) };
    }
    return cached.ring;
  };
};

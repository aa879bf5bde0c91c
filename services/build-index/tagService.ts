import type {
  Digest,
  EventLog,
  Position,
  ProjectionStore,
  RepoName,
  TagReference,
} from '../../domain';
import {
  ShoalError,
  formatTagReference,
  isShoalError,
  manifestStream,
  tagStream,
} from '../../domain';
import type { AsOf, TagChangeDoc, TagDoc } from '../../projections';
import {
  buildIndexProjection,
  changeAsOf,
  historyPartition,
  tagHistoryProjection,
} from '../../projections';
import type { WriterContext } from '../shared/events';
import { attributedWriter, newEvent } from '../shared/events';
import type { Paging, ReadOptions, TagApi, TagView } from './client/tagApi';
import { maxPageSize } from './client/tagApi';

/** Waits until the projections reflect a position (the projection runner's `waitFor`). */
export type PositionWaiter = (position: Position) => Promise<void>;

const casRetries = 5;

/** TagApi over the log (writes) and the build-index and tag-history projections (reads). */
export const createTagService = (deps: {
  log: EventLog;
  store: ProjectionStore;
  writer: WriterContext;
  /** Resolves when the projections have applied the position; rejects on timeout. */
  waitFor: PositionWaiter;
}): TagApi => {
  const { log, store, writer, waitFor } = deps;

  const ready = async (options?: ReadOptions) => {
    if (options?.minPosition !== undefined && options.minPosition > 0) {
      await waitFor(options.minPosition);
    }
  };

  /** The tag's stream, newest last, for `previous` and compare-and-swap. */
  const lastOf = async (ref: TagReference) => {
    const events = await log.readStream(tagStream(ref.repo, ref.tag));
    return events[events.length - 1];
  };

  const unknown = (ref: TagReference, suffix = '') =>
    new ShoalError('TAG_UNKNOWN', `tag ${formatTagReference(ref)} is not known${suffix}`, {
      detail: { repo: ref.repo, tag: ref.tag },
    });

  /**
   * Refuses a digest the repository holds no manifest of: read from the manifest's stream on
   * the log, so a manifest pushed a moment ago (through any proxy) counts at once.
   */
  const requireManifest = async (repo: RepoName, digest: Digest) => {
    const events = await log.readStream(manifestStream(repo, digest));
    if (events[events.length - 1]?.type === 'ManifestPushed') return;
    throw new ShoalError(
      'MANIFEST_UNKNOWN',
      `repository ${repo} has no manifest ${digest}${
        events.length > 0 ? ' (it was deleted)' : ''
      }: push the image first`,
      { detail: { name: repo, digest } },
    );
  };

  /** Appends one tag event with compare-and-swap on its stream, retrying lost races. */
  const writeTag = async (
    ref: TagReference,
    decide: (
      last: Awaited<ReturnType<typeof lastOf>>,
    ) => { append: Parameters<typeof log.append>[0][number] } | { result: Position },
  ): Promise<{ position: Position; changed: boolean }> => {
    for (let attempt = 1; ; attempt++) {
      const last = await lastOf(ref);
      const decision = decide(last);
      if ('result' in decision) return { position: decision.result, changed: false };
      try {
        const position = await log.append([decision.append], {
          expectedVersion: last === undefined ? 'no-stream' : last.streamVersion,
        });
        // The writer's own reads are never stale: answer once our projections have it.
        await waitFor(position);
        return { position, changed: true };
      } catch (error) {
        if (isShoalError(error, 'WRONG_EXPECTED_VERSION') && attempt < casRetries) continue;
        throw error;
      }
    }
  };

  return {
    put: async (ref, digest, options = {}) => {
      if (options.requireManifest !== false) await requireManifest(ref.repo, digest);
      return writeTag(ref, (last) => {
        if (last?.type === 'TagPushed' && last.data.digest === digest) {
          return { result: last.position };
        }
        const previous = last?.type === 'TagPushed' ? (last.data.digest as Digest) : undefined;
        if (previous !== undefined && options.overwrite === false) {
          throw new ShoalError(
            'DENIED',
            `tag ${formatTagReference(ref)} points at another manifest; moving it needs the ` +
              'overwrite permission',
            { detail: { repo: ref.repo, tag: ref.tag } },
          );
        }
        return {
          append: newEvent(attributedWriter(writer, options.by), 'TagPushed', {
            repo: ref.repo,
            tag: ref.tag,
            digest,
            ...(previous !== undefined && { previous }),
          }),
        };
      });
    },

    delete: async (ref, options = {}) => {
      const { position } = await writeTag(ref, (last) => {
        if (last?.type !== 'TagPushed') throw unknown(ref);
        return {
          append: newEvent(attributedWriter(writer, options.by), 'TagDeleted', {
            repo: ref.repo,
            tag: ref.tag,
            previous: last.data.digest as Digest,
          }),
        };
      });
      return { position };
    },

    get: async (ref, options) => {
      await ready(options);
      if (options?.at !== undefined) return getAsOf(ref, options.at);
      const doc = await store.get<TagDoc>(buildIndexProjection.name, {
        partition: ref.repo,
        id: ref.tag,
      });
      if (doc === undefined) throw unknown(ref);
      return { repo: ref.repo, tag: ref.tag, ...doc };
    },

    list: async (repo, options) => {
      await ready(options);
      const limit = pageSize(options);
      if (limit === 0) return { tags: [] };
      const rows = await store.list<TagDoc>(buildIndexProjection.name, repo, {
        ...(options?.last !== undefined && { after: options.last }),
        limit,
      });
      if (rows.length === 0 && options?.last === undefined) {
        throw new ShoalError('NAME_UNKNOWN', `repository ${repo} has no tags`, {
          detail: { repo },
        });
      }
      return { tags: rows.map((r) => r.id) };
    },

    history: async (ref, options) => {
      await ready(options);
      const rows = await historyOf(ref);
      if (rows.length === 0) throw unknown(ref);
      return rows;
    },

    catalog: async (options) => {
      await ready(options);
      const repositories = await store.partitions(buildIndexProjection.name, {
        ...(options?.last !== undefined && { after: options.last }),
        limit: pageSize(options),
      });
      return { repositories };
    },
  };

  async function historyOf(ref: TagReference): Promise<TagChangeDoc[]> {
    const rows = await store.list<TagChangeDoc>(
      tagHistoryProjection.name,
      historyPartition(ref.repo, ref.tag),
    );
    return rows.map((r) => r.doc);
  }

  async function getAsOf(ref: TagReference, at: AsOf): Promise<TagView> {
    const change = changeAsOf(await historyOf(ref), at);
    const when = 'position' in at ? `position ${at.position}` : new Date(at.time).toISOString();
    if (change === undefined || change.kind === 'deleted' || change.digest === undefined) {
      throw unknown(ref, ` at ${when}`);
    }
    return {
      repo: ref.repo,
      tag: ref.tag,
      digest: change.digest,
      position: change.position,
      at: change.at,
    };
  }
};

const pageSize = (options?: Paging): number => {
  const n = options?.n ?? maxPageSize;
  if (!Number.isInteger(n) || n < 0) {
    throw new ShoalError('PARAMETER_INVALID', 'page size n must be a non-negative integer');
  }
  return Math.min(n, maxPageSize);
};

export type { RepoName };

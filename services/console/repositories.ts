import type { Position, ProjectionStore } from '../../domain';
import { ShoalError, orThrow, parseRepoName, parseTag } from '../../domain';
import type { BlobLinkDoc, DeletedDoc, ManifestDoc, TagChangeDoc, TagDoc } from '../../projections';
import {
  buildIndexProjection,
  changeAsOf,
  historyPartition,
  internalPartitionPrefix,
  isLinked,
  manifestIndexKeys,
  manifestIndexProjection,
  parseAsOf,
  tagHistoryProjection,
} from '../../projections';
import type { ManifestContents } from './manifestContents';
import { listUpTo, partitionsWithPrefix } from './storeReads';
import type { Viewer } from './viewer';

const tags = buildIndexProjection.name;
const history = tagHistoryProjection.name;
const manifests = manifestIndexProjection.name;

/** Who made a change and when, as the tag history records it. */
export type Change = {
  readonly position: Position;
  readonly at: string;
  readonly actor: string;
  readonly cluster: string;
};

export type RepositorySummary = {
  readonly name: string;
  readonly tags: number;
  readonly manifests: number;
  /** Bytes of the manifests and blobs linked to the repository (shared blobs count in each). */
  readonly size: number;
  /** Counts and size stopped at the console's scan cap. */
  readonly capped: boolean;
  readonly lastChange?: Change & { readonly tag: string; readonly digest?: string };
};

export type TagRow = {
  readonly tag: string;
  readonly digest: string;
  readonly mediaType?: string;
  readonly size?: number;
  /** `os/architecture[/variant]` of the image, or of each child of an index. */
  readonly platforms?: readonly string[];
  readonly lastChange?: Change;
};

/** A repository the viewer may not pull is, to them, a repository that does not exist. */
export const checkRepo = (viewer: Viewer, repo: string): string => {
  const name = orThrow(parseRepoName(repo));
  if (!viewer.mayPull(name)) {
    throw new ShoalError('NAME_UNKNOWN', `repository ${name} is not known`);
  }
  return name;
};

/** Merges two sorted name lists into one sorted list without repeats. */
const mergeSorted = (a: readonly string[], b: readonly string[]): string[] =>
  [...new Set([...a, ...b])].sort((x, y) => (x < y ? -1 : x > y ? 1 : 0));

/**
 * Reads of repositories and their tags for the console: from build-index (tags), the tag
 * history (who and when, and the repository as of any time or position) and the manifest
 * index (manifests, blob links and sizes). Every read is bounded.
 */
export const createRepositoryReads = (deps: {
  store: ProjectionStore;
  contents: ManifestContents;
}) => {
  const { store, contents } = deps;

  /** The newest change of a tag, from its history. */
  const lastChangeOf = async (repo: string, tag: string): Promise<TagChangeDoc | undefined> =>
    (
      await store.list<TagChangeDoc>(history, historyPartition(repo, tag), {
        reverse: true,
        limit: 1,
      })
    )[0]?.doc;

  const change = (doc: TagChangeDoc): Change => ({
    position: doc.position,
    at: doc.at,
    actor: doc.actor,
    cluster: doc.cluster,
  });

  /**
   * Repository names after `after` in order: those with tags or manifests (one scan of both
   * projections' partitions, `batch` at a time).
   */
  const namesAfter = async (after: string | undefined, batch: number) => {
    const options = { ...(after !== undefined && { after }), limit: batch };
    const [tagged, withManifests] = await Promise.all([
      store.partitions(tags, options),
      store.partitions(manifests, options),
    ]);
    const repos = withManifests.filter((p) => !p.startsWith(internalPartitionPrefix));
    const manifestsDone = repos.length < withManifests.length || withManifests.length < batch;
    // Only names up to the smaller last name of a full page are sure to be complete.
    const bounds = [
      ...(tagged.length === batch ? [tagged.at(-1) as string] : []),
      ...(!manifestsDone && repos.length > 0 ? [repos.at(-1) as string] : []),
    ];
    const bound = bounds.length === 0 ? undefined : bounds.sort()[0];
    const merged = mergeSorted(tagged, repos).filter((n) => bound === undefined || n <= bound);
    return { names: merged, done: bound === undefined };
  };

  const summary = async (name: string): Promise<RepositorySummary> => {
    const [tagRows, manifestRows, links] = await Promise.all([
      listUpTo<TagDoc>(store, tags, name),
      listUpTo<ManifestDoc>(store, manifests, name),
      listUpTo<BlobLinkDoc>(store, manifests, `~blob/${name}`),
    ]);
    const deleted = await store.getMany(
      manifests,
      links.items.map((link) => manifestIndexKeys.deleted(link.id)),
    );
    let size = 0;
    for (const link of links.items) {
      const gone = deleted.get(`${manifestIndexKeys.deleted(link.id).partition}\u0000${link.id}`);
      if (isLinked(link.doc, gone as DeletedDoc | undefined)) size += link.doc.size;
    }
    for (const manifest of manifestRows.items) size += manifest.doc.size;
    let latest: { id: string; doc: TagDoc } | undefined;
    for (const row of tagRows.items) {
      if (latest === undefined || row.doc.position > latest.doc.position) latest = row;
    }
    const last = latest === undefined ? undefined : await lastChangeOf(name, latest.id);
    return {
      name,
      tags: tagRows.items.length,
      manifests: manifestRows.items.length,
      size,
      capped: tagRows.capped || manifestRows.capped || links.capped,
      ...(latest !== undefined &&
        last !== undefined && {
          lastChange: { tag: latest.id, digest: latest.doc.digest, ...change(last) },
        }),
    };
  };

  return {
    /**
     * Repositories whose name contains `query` (case-insensitive), after `after`, at most
     * `limit`; `next` is where to go on (the scan stops after `scanLimit` names).
     */
    async list(
      viewer: Viewer,
      options: { query?: string; after?: string; limit: number; scanLimit?: number },
    ): Promise<{ repositories: RepositorySummary[]; next?: string }> {
      const query = (options.query ?? '').trim().toLowerCase();
      const scanLimit = options.scanLimit ?? 20_000;
      const found: string[] = [];
      let after = options.after;
      let scanned = 0;
      let more = true;
      const full = () => found.length >= options.limit || scanned >= scanLimit;
      while (more && !full()) {
        const { names, done } = await namesAfter(after, 500);
        let i = 0;
        while (i < names.length && !full()) {
          const name = names[i] as string;
          i += 1;
          scanned += 1;
          after = name;
          if (query !== '' && !name.toLowerCase().includes(query)) continue;
          if (viewer.mayPull(name)) found.push(name);
        }
        more = names.length > 0 && (!done || i < names.length);
      }
      const repositories = await Promise.all(found.map(summary));
      return { repositories, ...(more && after !== undefined && { next: after }) };
    },

    summary: (viewer: Viewer, repo: string) => summary(checkRepo(viewer, repo)),

    /** A repository's current tags with digest, size, platforms and their last change. */
    async tags(
      viewer: Viewer,
      repo: string,
      options: { after?: string; limit: number },
    ): Promise<{ tags: TagRow[]; next?: string }> {
      const name = checkRepo(viewer, repo);
      const rows = await store.list<TagDoc>(tags, name, {
        ...(options.after !== undefined && { after: options.after }),
        limit: options.limit + 1,
      });
      const page = rows.slice(0, options.limit);
      const out = await Promise.all(
        page.map(async ({ id, doc }): Promise<TagRow> => {
          const [last, manifest] = await Promise.all([
            lastChangeOf(name, id),
            store.get<ManifestDoc>(manifests, manifestIndexKeys.manifest(name, doc.digest)),
          ]);
          const platforms =
            manifest === undefined ? undefined : await contents.platforms(name, doc.digest);
          return {
            tag: id,
            digest: doc.digest,
            ...(manifest !== undefined && { mediaType: manifest.mediaType, size: manifest.size }),
            ...(platforms !== undefined && { platforms }),
            ...(last !== undefined && { lastChange: change(last) }),
          };
        }),
      );
      return {
        tags: out,
        ...(rows.length > options.limit && { next: page.at(-1)?.id as string }),
      };
    },

    /** Every change of a tag, newest first (at most the scan cap). */
    async history(viewer: Viewer, repo: string, tag: string) {
      const name = checkRepo(viewer, repo);
      const tagName = orThrow(parseTag(tag));
      const { items, capped } = await listUpTo<TagChangeDoc>(
        store,
        history,
        historyPartition(name, tagName),
      );
      if (items.length === 0) {
        throw new ShoalError('TAG_UNKNOWN', `${name}:${tagName} has no history`);
      }
      return { repo: name, tag: tagName, capped, changes: items.map((i) => i.doc).reverse() };
    },

    /**
     * The whole repository as of a time or a log position (`at`, as `shoal tags get --at`
     * takes it): every tag that existed then with its digest then, and its digest now.
     */
    async asOf(viewer: Viewer, repo: string, at: string) {
      const name = checkRepo(viewer, repo);
      const asOf = orThrow(parseAsOf(at));
      const prefix = `${name}:`;
      const partitions = await partitionsWithPrefix(store, history, prefix, { limit: 2000 });
      const rows = await Promise.all(
        partitions.map(async (partition) => {
          const tag = partition.slice(prefix.length);
          const { items } = await listUpTo<TagChangeDoc>(store, history, partition);
          const changes = items.map((i) => i.doc);
          const then = changeAsOf(changes, asOf);
          const now = changes.at(-1);
          return {
            tag,
            ...(then?.kind === 'pushed' && { digest: then.digest, change: change(then) }),
            ...(now?.kind === 'pushed' && { current: now.digest }),
          };
        }),
      );
      return {
        repo: name,
        asOf,
        tags: rows.filter((row) => row.digest !== undefined),
        /** Tags that did not exist then (created later, or deleted by then). */
        absent: rows.filter((row) => row.digest === undefined).map((row) => row.tag),
        capped: partitions.length >= 2000,
      };
    },
  };
};

export type RepositoryReads = ReturnType<typeof createRepositoryReads>;

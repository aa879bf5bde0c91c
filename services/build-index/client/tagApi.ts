import type { Digest, Position, RepoName, TagReference } from '../../../domain';
import type { AsOf, TagChangeDoc } from '../../../projections';
import type { Attribution } from '../../shared/events';

/** A tag as build-index answers it. */
export type TagView = {
  readonly repo: string;
  readonly tag: string;
  readonly digest: Digest;
  /** Position of the event that set this value. */
  readonly position: Position;
  readonly at: string;
};

export type TagChange = TagChangeDoc;

export type ReadOptions = {
  /** The read reflects at least this log position (read-your-writes). */
  readonly minPosition?: Position;
};

export type Paging = { readonly n?: number; readonly last?: string };

/** Whom a write is for: the actor and client address its event records. */
export type WriteOptions = { readonly by?: Attribution };

export type PutOptions = WriteOptions & {
  /**
   * Whether the tag may be moved when it points at another manifest (default true). False:
   * such a put fails with `DENIED` and the tag stays (immutable tags).
   */
  readonly overwrite?: boolean;
  /**
   * Whether the repository must hold a manifest of the digest (default true; `MANIFEST_UNKNOWN`
   * otherwise). False (`shoal tags put --force`) is honoured for cluster services and in open
   * mode only.
   */
  readonly requireManifest?: boolean;
};

/**
 * What build-index does with tags. Implemented locally over the log and projections
 * (`createTagService`) and remotely over HTTP (`createBuildIndexClient`, beside this file),
 * so the CLI and other services use either without caring which. Other services import it
 * from here, build-index's client folder, never build-index's own files.
 */
export interface TagApi {
  /**
   * Points a tag at a manifest the repository holds (`MANIFEST_UNKNOWN` otherwise, unless
   * `requireManifest` is false). Unchanged tags append nothing and return the old position.
   */
  put(
    ref: TagReference,
    digest: Digest,
    options?: PutOptions,
  ): Promise<{ position: Position; changed: boolean }>;
  /** Fails with `TAG_UNKNOWN` when the tag does not exist (or did not, at `at`). */
  get(ref: TagReference, options?: ReadOptions & { at?: AsOf }): Promise<TagView>;
  /** Fails with `TAG_UNKNOWN` when the tag does not exist. */
  delete(ref: TagReference, options?: WriteOptions): Promise<{ position: Position }>;
  /** Tags of a repository in lexical order; `NAME_UNKNOWN` for a repository without tags. */
  list(repo: RepoName, options?: ReadOptions & Paging): Promise<{ tags: string[] }>;
  /** Every change of a tag, oldest first. `TAG_UNKNOWN` when it never existed. */
  history(ref: TagReference, options?: ReadOptions): Promise<TagChange[]>;
  /** Repositories that have at least one tag, in lexical order. */
  catalog(options?: ReadOptions & Paging): Promise<{ repositories: string[] }>;
}

export const maxPageSize = 10_000;

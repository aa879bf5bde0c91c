import type {
  BlobRemoval,
  LinkRemoval,
  ManifestRemoval,
  Position,
  TagRemoval,
} from '../../../domain';

/** Counts per repository (or rule): what a run removed, or would remove in a dry run. */
export type GcCounts = {
  tags: number;
  manifests: number;
  blobs: number;
  links: number;
  /** Bytes of the collected blobs (a blob shared by repositories counts in each). */
  bytes: number;
};

/** What one GC run did (or, dry, would do). */
export type GcReport = {
  readonly run: string;
  readonly dryRun: boolean;
  /** The log position the decisions were taken at. */
  readonly position: Position;
  readonly graceMs: number;
  readonly startedAt: string;
  readonly ms: number;
  /** ms spent reading the projections and deciding (the rest is removing). */
  readonly planMs: number;
  readonly examined: { readonly manifests: number; readonly blobs: number; readonly bytes: number };
  readonly removed: GcCounts;
  /** Decisions given up because the stream moved (a push won): left for the next run. */
  readonly skipped: number;
  /** Set when the run stopped before the end (it ran longer than its grace allows). */
  readonly stopped?: string;
  readonly repositories: Readonly<Record<string, GcCounts>>;
  readonly rules: Readonly<Record<string, GcCounts>>;
  /** What was (or would be) removed, each with its reason. */
  readonly items: {
    readonly tags: readonly TagRemoval[];
    readonly manifests: readonly ManifestRemoval[];
    readonly blobs: readonly BlobRemoval[];
    readonly links: readonly LinkRemoval[];
  };
};

export type GcRunRequest = {
  readonly dryRun?: boolean;
  /** Overrides the configured grace window for this run. */
  readonly graceMs?: number;
};

/** Runs GC where it is configured (build-index), or on the data directory (the CLI). */
export interface GcApi {
  run(request: GcRunRequest): Promise<GcReport>;
}

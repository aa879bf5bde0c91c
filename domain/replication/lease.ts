/**
 * Who runs the replicator: one process among those that could, the lease's holder. Shoal has
 * two: a file in the data directory (one host) and membership of a Kafka consumer group (a
 * fleet on one Kafka log). Replication is idempotent either way; the lease keeps two
 * replicators from doing the same work twice.
 */
export type Lease = {
  /** Takes the lease if it is free (or its holder is gone); true when this process holds it. */
  tryAcquire(): Promise<boolean>;
  /** Whether this process still holds it (renewing it where that takes an act); false: stop. */
  renew(): Promise<boolean>;
  /** Gives it up, so another process takes it at once. */
  release(): Promise<void>;
  /** Who holds it now, if anyone (for status and logs). */
  holder(): Promise<LeaseHolder | undefined>;
};

export type LeaseHolder = {
  readonly pid: number;
  readonly host: string;
  /** This holding: the file lease's token, the group member's id. */
  readonly token: string;
};

// What the soak records: every client operation with its start, end and result, and every
// fault with its start and end. The checker reads only this and the fleet's final state.

/**
 * - ok: the service acknowledged it (a write happened; a read returned these bytes);
 * - fail: it did not happen (a definite refusal, or a read that got nothing);
 * - info: unknown — a write whose answer never came may or may not have happened.
 */
export type Outcome = 'ok' | 'fail' | 'info';

export type OpKind =
  | 'push' // an image: blobs, then its manifest under a tag
  | 'index' // a multi-platform index under a tag (its manifests by digest first)
  | 'sign' // a signature (a referrer of an index), by digest
  | 'move' // a tag pointed at a manifest the repository already has
  | 'delete' // a tag deleted
  | 'read' // a tag read through a proxy with read-your-writes, then its blobs
  | 'pull'; // a tag pulled through an agent (the swarm), then its blobs

/** The operations that write a tag (one at a time per tag). */
export const tagWrites: ReadonlySet<OpKind> = new Set(['push', 'index', 'move', 'delete']);

export type Op = {
  readonly id: number;
  readonly kind: OpKind;
  readonly repo: string;
  readonly tag?: string;
  /** Writes: what the tag points at after it (null: deleted). Reads: what was returned. */
  value?: string | null;
  /** Every blob and manifest digest a push or index wrote (to pull back at the end). */
  written?: string[];
  /** sign: the manifest the signature refers to. */
  subject?: string;
  /** Reads: the position asked for (Shoal-Min-Position). */
  minPosition?: number;
  /** Writes: the position the service answered with. */
  position?: number;
  /** Reads: digests whose bytes did not match. */
  corrupt?: string[];
  readonly via: string;
  readonly start: number;
  end: number;
  outcome: Outcome;
  error?: string;
  attempts: number;
};

export type FaultKind = 'kill' | 'freeze' | 'broker' | 'backend' | 'disk' | 'partition';

export const faultKinds: readonly FaultKind[] = [
  'kill',
  'freeze',
  'broker',
  'backend',
  'disk',
  'partition',
];

export type Fault = {
  readonly kind: FaultKind;
  /** What it hit (set by the injector once it has chosen). */
  target: string;
  readonly start: number;
  end: number;
  /** Why it was not injected (no root, no iptables): counted apart, never silently. */
  skipped?: string;
};

import type { World } from './world';

/** The q-quantile of ascending `sorted` (nearest rank). */
export const quantile = (sorted: readonly number[], q: number): number =>
  sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1))] ?? NaN;

/**
 * The lower bound of one host's completion time (the README's simulator section): the
 * Kumar–Ross fluid bound max{F/u_s, F/d, N·F/(u_s + Σu)} plus the piece pipeline term
 * ⌊log2 N⌋·s/u (Mundinger et al.: a piece is forwarded only once it is whole).
 */
export const lowerBound = (input: {
  /** Bytes the host fetches (all layers). */
  readonly size: number;
  readonly pieceLength: number;
  readonly hosts: number;
  /** Bytes/s: the origins' total upload, the host's download, the agents' total upload. */
  readonly originUp: number;
  readonly down: number;
  readonly totalUp: number;
  /** The typical agent upload (for the pipeline term). */
  readonly up: number;
}): { fluid: number; pipeline: number; bound: number } => {
  const { size, hosts } = input;
  const fluid = Math.max(
    size / input.originUp,
    size / input.down,
    (hosts * size) / (input.originUp + input.totalUp),
  );
  const pipeline = (Math.floor(Math.log2(Math.max(1, hosts))) * input.pieceLength) / input.up;
  return { fluid, pipeline, bound: fluid + pipeline };
};

export type HostResult = {
  readonly host: number;
  readonly zone: number;
  /** Seconds from its request to the last layer verified; undefined: never finished. */
  readonly seconds: number | undefined;
  readonly bound: number;
  readonly slow: boolean;
  readonly died: boolean;
  readonly rejoined: boolean;
  readonly firstByteSeconds: number | undefined;
};

/** Per-host outcomes of a finished run. */
export const hostResults = (world: World, slowHosts: ReadonlySet<number>): HostResult[] => {
  const { options } = world;
  const size = options.blobs.reduce((a, b) => a + b, 0);
  const pieceLength = Math.max(...world.blobs.map((b) => b.metainfo.pieceLength));
  const originUp = world.servingOrigins() * options.origins.up;
  const totalUp = options.agents.reduce((n, a) => n + a.up, 0);
  const typicalUp = [...options.agents].map((a) => a.up).sort((a, b) => a - b)[
    Math.floor(options.agents.length / 2)
  ] as number;
  return world.agents.map((host) => {
    const spec = host.spec as NonNullable<typeof host.spec>;
    const downloads = world.blobs.map((b) => host.downloads.get(b.digest));
    const done = downloads.every((d) => d?.completedAt !== undefined);
    const start = spec.joinAtMs;
    const end = Math.max(...downloads.map((d) => d?.completedAt ?? -Infinity));
    const firstBytes = downloads
      .map((d) => d?.scheduler.stats.firstByteAt)
      .filter((t): t is number => t !== undefined);
    const { bound } = lowerBound({
      size,
      pieceLength,
      hosts: world.agents.length,
      originUp,
      down: spec.down,
      totalUp,
      up: typicalUp,
    });
    return {
      host: host.index,
      zone: spec.zone,
      seconds: done ? (end - start) / 1000 : undefined,
      bound,
      slow: slowHosts.has(host.index),
      died: spec.dieAtMs !== undefined,
      rejoined: spec.rejoinAtMs !== undefined,
      firstByteSeconds:
        firstBytes.length > 0 ? (Math.min(...firstBytes) - start) / 1000 : undefined,
    };
  });
};

export type Summary = {
  readonly hosts: number;
  readonly finished: number;
  readonly p50: number;
  readonly p99: number;
  readonly p999: number;
  readonly max: number;
  readonly etaP50: number;
  readonly etaP99: number;
  readonly etaP999: number;
  readonly etaMin: number;
};

/** Percentiles of completion time and of η = bound / time over `results`. */
export const summarize = (results: readonly HostResult[]): Summary => {
  const finished = results.filter((r) => r.seconds !== undefined);
  const times = finished.map((r) => r.seconds as number).sort((a, b) => a - b);
  // η descending: its p99 is the worst 1 %.
  const etas = finished.map((r) => r.bound / (r.seconds as number)).sort((a, b) => b - a);
  return {
    hosts: results.length,
    finished: finished.length,
    p50: quantile(times, 0.5),
    p99: quantile(times, 0.99),
    p999: quantile(times, 0.999),
    max: times[times.length - 1] ?? NaN,
    etaP50: quantile(etas, 0.5),
    etaP99: quantile(etas, 0.99),
    etaP999: quantile(etas, 0.999),
    etaMin: etas[etas.length - 1] ?? NaN,
  };
};

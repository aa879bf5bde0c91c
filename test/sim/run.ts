import type { HostResult, Summary } from './metrics';
import { hostResults, lowerBound, quantile, summarize } from './metrics';
import type { ScenarioName } from './scenarios';
import { scenarios } from './scenarios';
import type { WorldOptions } from './world';
import { World } from './world';

/** What one run of a scenario found, as written to its JSON file. */
export type SimResult = {
  readonly scenario: ScenarioName;
  readonly description: string;
  readonly hosts: number;
  readonly seed: number;
  readonly parameters: {
    readonly agentRate: number;
    readonly origins: number;
    readonly originRate: number;
    readonly servingOrigins: number;
    readonly trackers: number;
    readonly layers: readonly number[];
    readonly pieceLength: number;
    readonly stepMs: number;
    readonly allocation: string;
    readonly latencyMs: number;
  };
  /** The bound of a typical host (seconds): Kumar–Ross, the pipeline term, their sum. */
  readonly bound: { readonly fluid: number; readonly pipeline: number; readonly bound: number };
  /** Every agent; the healthy ones (not slow, never died); the impaired ones. */
  readonly all: Summary;
  readonly healthy: Summary;
  readonly impaired: Summary | undefined;
  /** Bytes the origins sent ÷ the image size. */
  readonly originEgressRatio: number;
  /** Bytes agents received beyond the pieces they kept (endgame, cancelled pieces). */
  readonly duplicateBytes: number;
  readonly duplicateRatio: number;
  /** Share of all bytes that crossed zones. */
  readonly interZoneShare: number;
  readonly trackerAnnounces: number;
  readonly simulatedSeconds: number;
  readonly events: number;
  /** Distinct simulated instants run (the microtask queue drains after each). */
  readonly instants?: number;
  readonly eventsPerSecond: number;
  readonly wallSeconds: number;
  readonly peakRssMiB: number;
  /** Completion times of the healthy hosts, seconds, ascending. */
  readonly times: readonly number[];
  readonly impairedTimes: readonly number[];
};

export type RunOptions = {
  readonly scenario: ScenarioName;
  readonly hosts?: number;
  readonly seed?: number;
  /** Overrides of the world (the network's step, the allocation, settings). */
  readonly tune?: (world: WorldOptions) => WorldOptions;
  readonly progress?: (line: string) => void;
};

/** Runs one scenario to the end and measures it. */
export const runScenario = async (options: RunOptions): Promise<SimResult> => {
  const scenario = scenarios[options.scenario];
  const hosts = options.hosts ?? scenario.defaultHosts;
  const seed = options.seed ?? 1;
  const built = scenario.build(hosts, seed);
  const worldOptions = options.tune?.(built.world) ?? built.world;
  const started = performance.now();
  const world = new World(worldOptions);
  let lastWall = started;
  await world.run((w) => {
    const now = performance.now();
    if (options.progress === undefined || now - lastWall < 5000) return;
    lastWall = now;
    const done = w.agents.filter((h) => h.finished).length;
    options.progress(
      `  t=${(w.engine.now / 1000).toFixed(1)} s  done ${done}/${w.agents.length}  ` +
        `${w.engine.events} events  ${((now - started) / 1000).toFixed(0)} s wall  ` +
        `${(process.memoryUsage().rss / 2 ** 20).toFixed(0)} MiB`,
    );
  });
  const wallSeconds = (performance.now() - started) / 1000;
  const impairedHosts = new Set([
    ...built.slow,
    ...world.agents.filter((h) => h.spec?.dieAtMs !== undefined).map((h) => h.index),
  ]);
  const results = hostResults(world, built.slow);
  const healthy = results.filter((r) => !impairedHosts.has(r.host));
  const impaired = results.filter((r) => impairedHosts.has(r.host));
  const size = worldOptions.blobs.reduce((a, b) => a + b, 0);
  const pieceLength = Math.max(...world.blobs.map((b) => b.metainfo.pieceLength));
  const agentRate = [...worldOptions.agents.map((a) => a.down)].sort((a, b) => a - b)[
    Math.floor(worldOptions.agents.length / 2)
  ] as number;
  const servingOrigins = world.servingOrigins();
  const bound = lowerBound({
    size,
    pieceLength,
    hosts,
    originUp: servingOrigins * worldOptions.origins.up,
    down: agentRate,
    totalUp: worldOptions.agents.reduce((n, a) => n + a.up, 0),
    up: agentRate,
  });
  const net = world.network;
  const originSent = world.originHosts.reduce((n, o) => n + (net.sentBy[o.index] as number), 0);
  let received = 0;
  let stored = 0;
  for (const host of world.agents) {
    received += net.receivedBy[host.index] as number;
    for (const download of host.downloads.values()) {
      stored += Math.min(
        download.pieces.count * download.blob.metainfo.pieceLength,
        download.blob.metainfo.length,
      );
    }
  }
  const times = (rs: HostResult[]) =>
    rs
      .filter((r) => r.seconds !== undefined)
      .map((r) => r.seconds as number)
      .sort((a, b) => a - b);
  const usage = process.resourceUsage();
  return {
    scenario: scenario.name,
    description: scenario.summary,
    hosts,
    seed,
    parameters: {
      agentRate,
      origins: worldOptions.origins.count,
      originRate: worldOptions.origins.up,
      servingOrigins,
      trackers: worldOptions.trackers,
      layers: worldOptions.blobs,
      pieceLength,
      stepMs: worldOptions.network.stepMs,
      allocation: worldOptions.network.allocation,
      latencyMs: worldOptions.network.latencyMs,
    },
    bound,
    all: summarize(results),
    healthy: summarize(healthy),
    impaired: impaired.length > 0 ? summarize(impaired) : undefined,
    originEgressRatio: originSent / size,
    duplicateBytes: Math.max(0, received - stored),
    duplicateRatio: Math.max(0, received - stored) / Math.max(1, stored),
    interZoneShare: net.totalBytes > 0 ? net.interZoneBytes / net.totalBytes : 0,
    trackerAnnounces: world.trackerAnnounces,
    simulatedSeconds: world.engine.now / 1000,
    events: world.engine.events,
    instants: world.engine.instants,
    eventsPerSecond: world.engine.events / wallSeconds,
    wallSeconds,
    peakRssMiB: usage.maxRSS / 1024,
    times: times(healthy),
    impairedTimes: times(impaired),
  };
};

/** The p-quantile of a result's healthy completion times. */
export const timeAt = (result: SimResult, q: number): number => quantile(result.times, q);

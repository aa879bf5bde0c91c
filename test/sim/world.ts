import { createHash } from 'node:crypto';
import { rankMembers, owners as ownersOf } from '../../domain/placement';
import { defaultBurstOf } from '../../p2p/bandwidth';
import type { Metainfo } from '../../p2p/metainfo';
import { infoHash as infoHashOf, pieceLengthFor } from '../../p2p/metainfo';
import type { PeerCandidate, SchedulerConfig, SchedulerLogger } from '../../p2p/scheduler';
import { BlobScheduler } from '../../p2p/scheduler';
import type { Announcement, AnnounceAnswer } from '../../p2p/swarm';
import type { Timers } from '../../p2p/timers';
import type { WireConnection } from '../../p2p/wire';
import { AgentConfigSchema } from '../../services/agent/config';
import { originSchedulerConfig, SeederConfigSchema } from '../../services/origin/seeder/config';
import { validateConfig } from '../../services/shared/config';
import type { SeederJoined } from '../../services/origin/client/seederClient';
import type { Logger } from '../../services/shared/logger';
import { createAnnounceHandler } from '../../services/tracker/announce';
import { TrackerConfigSchema } from '../../services/tracker/config';
import type { PeerStore } from '../../services/tracker/peerStore';
import { createPeerStore } from '../../services/tracker/peerStore';
import { SimEngine } from './engine';
import type { HostLink, NetworkOptions } from './network';
import { Network } from './network';
import type { Random } from './random';
import { seededRandom } from './random';
import { SimConnection } from './simConnection';
import { SimPieces } from './simPieces';

/*
 * A simulated fleet: agents and origins running the real BlobScheduler, announcing to
 * trackers that run the real peer store and announce policy, over the simulated network.
 * The roles' settings are their real config schemas' defaults (agent `p2p.scheduler`, the
 * origin seeder's `scheduler`, the tracker's `announce`), with a scenario's overrides.
 */

export type AgentSpec = {
  /** Bytes per second. */
  readonly up: number;
  readonly down: number;
  readonly zone: number;
  /** When its runtime asks for the blobs (ms). */
  readonly joinAtMs: number;
  /** The agent process dies then (its connections drop, it never says goodbye). */
  readonly dieAtMs?: number;
  /** A new agent process starts on the host then, resuming from the pieces it kept. */
  readonly rejoinAtMs?: number;
};

export type WorldOptions = {
  readonly seed: number;
  readonly gridMs?: number;
  readonly network: NetworkOptions;
  readonly agents: readonly AgentSpec[];
  readonly origins: { readonly count: number; readonly up: number; readonly zone?: number };
  readonly trackers: number;
  /** Origins that hold each blob (rendezvous hashing). */
  readonly replicas: number;
  /** Layer sizes in bytes; every agent fetches all of them at once. */
  readonly blobs: readonly number[];
  readonly agentScheduler?: Partial<SchedulerConfig>;
  readonly originScheduler?: Record<string, number>;
  readonly announce?: Record<string, number>;
  /**
   * The whole-blob digest check when the last piece is in (bytes/s; 0: instant). Agents run
   * it as the agent's config says (`cache.verifyDigest`, default off: the check is derived
   * from the pieces, each hashed as it arrived) and always after resuming from kept pieces.
   */
  readonly verifyBytesPerSecond: number;
  /** Overrides the agent's `cache.verifyDigest` default. */
  readonly verifyDigest?: boolean;
  /** A tracker's time to answer one announce (ms), on top of the round trip. */
  readonly trackerServiceMs: number;
  /** An origin's time to join a swarm when a tracker asks (ms), on top of the round trip. */
  readonly originJoinMs: number;
  /**
   * Up to this much (uniform, ms) is added to each connection's setup and each tracker
   * answer: processes do not run in lockstep, and with none, every pair of peers that dial
   * each other at the same instant collides.
   */
  readonly jitterMs: number;
  /** Simulated time after which the run stops, finished or not (ms). */
  readonly limitMs: number;
};

export type BlobRun = {
  readonly digest: string;
  readonly metainfo: Metainfo;
  readonly infoHash: string;
};

type Download = {
  readonly blob: BlobRun;
  readonly scheduler: BlobScheduler;
  readonly pieces: SimPieces;
  completedAt: number | undefined;
  /** Ends the announce loop's wait (set while it sleeps), as SwarmHost's does. */
  wake?: () => void;
};

export class SimHost {
  readonly index: number;
  readonly peerId: Buffer;
  readonly idHex: string;
  readonly address: string;
  readonly origin: boolean;
  readonly spec: AgentSpec | undefined;
  /** Incremented when the process dies or restarts: timers of an old process never fire. */
  generation = 0;
  alive = false;
  /** Counted as done: every layer verified, or dead for good. */
  finished = false;
  diedAt: number | undefined;
  readonly swarms = new Map<string, Download>();
  /** Every download this host ran, by digest (the latest process's). */
  readonly downloads = new Map<string, Download>();
  readonly connections = new Set<SimConnection>();
  timers!: Timers;

  constructor(index: number, origin: boolean, spec: AgentSpec | undefined, zone: number) {
    this.index = index;
    this.origin = origin;
    this.spec = spec;
    this.peerId = createHash('sha256').update(`shoal-sim:${index}`).digest().subarray(0, 20);
    this.idHex = this.peerId.toString('hex');
    this.address = `10.${zone}.${(index >> 8) & 255}.${index & 255}:7001`;
  }
}

type Tracker = {
  readonly id: string;
  readonly peers: PeerStore;
  readonly handle: ReturnType<typeof createAnnounceHandler>;
  announces: number;
};

const quiet = { debug: () => {}, info: () => {}, warn: () => {} } as unknown as Logger;

export class World {
  readonly options: WorldOptions;
  readonly engine: SimEngine;
  readonly network: Network;
  readonly hosts: SimHost[] = [];
  readonly agents: SimHost[] = [];
  readonly originHosts: SimHost[] = [];
  readonly blobs: BlobRun[];
  readonly agentConfig: SchedulerConfig;
  /** Whether agents read a finished blob back to check its digest (`cache.verifyDigest`). */
  readonly verifyDigest: boolean;
  readonly originConfig: Partial<SchedulerConfig>;
  readonly announceConfig: ReturnType<typeof announceSettings>;
  private readonly byAddress = new Map<string, SimHost>();
  private readonly trackers: Tracker[];
  private readonly random: Random;
  private streamCounter = 0;
  /** Scheduler logs (debugging). */
  logger: SchedulerLogger | undefined;
  private unfinished = 0;
  /** Whether agents sit in more than one zone (then they announce theirs). */
  private readonly zoned: boolean;

  constructor(options: WorldOptions) {
    this.options = options;
    this.engine = new SimEngine({ gridMs: options.gridMs });
    this.random = seededRandom(options.seed, 1);
    const agent = validateConfig(AgentConfigSchema, {
      p2p: { scheduler: options.agentScheduler ?? {} },
    });
    this.agentConfig = agent.p2p.scheduler as SchedulerConfig;
    this.verifyDigest = options.verifyDigest ?? agent.cache.verifyDigest;
    this.originConfig = originSchedulerConfig(
      validateConfig(SeederConfigSchema, { scheduler: options.originScheduler ?? {} }),
    );
    this.announceConfig = announceSettings(options.announce ?? {});
    this.zoned = zoneCount(options.agents) > 1;
    const links: HostLink[] = [];
    options.agents.forEach((spec, i) => {
      const host = new SimHost(i, false, spec, spec.zone);
      this.hosts.push(host);
      this.agents.push(host);
      links.push({
        up: spec.up,
        down: spec.down,
        zone: spec.zone,
        burstUp: defaultBurstOf(spec.up),
        burstDown: defaultBurstOf(spec.down),
      });
    });
    for (let o = 0; o < options.origins.count; o += 1) {
      const zone = options.origins.zone ?? o % Math.max(1, zoneCount(options.agents));
      const host = new SimHost(this.hosts.length, true, undefined, zone);
      this.hosts.push(host);
      this.originHosts.push(host);
      // Origins limit their egress only (the seeder's bandwidth), with the same burst rule.
      links.push({
        up: options.origins.up,
        down: Infinity,
        zone,
        burstUp: defaultBurstOf(options.origins.up),
        burstDown: 0,
      });
    }
    for (const host of this.hosts) this.byAddress.set(host.address, host);
    this.network = new Network(this.engine, links, options.network);
    this.trackers = Array.from({ length: Math.max(1, options.trackers) }, (_, t) => {
      const peers = createPeerStore({
        ttlMs: this.announceConfig.peerTtlMs,
        now: () => this.engine.now,
        random: seededRandom(options.seed, 100 + t),
      });
      const id = `tracker-${t}`;
      const handle = createAnnounceHandler({
        peers,
        origins: { join: (digest) => this.joinOrigins(digest) },
        selfUrl: () => id,
        config: this.announceConfig,
        now: () => this.engine.now,
        logger: quiet,
        timers: this.engine.timers(),
      });
      return { id, peers, handle, announces: 0 };
    });
    this.blobs = options.blobs.map((length, k) => blobOf(options.seed, k, length));
  }

  /** Runs the scenario to the end (every live agent complete, or the time limit). */
  async run(onProgress?: (world: World) => void): Promise<void> {
    for (const host of this.originHosts) this.start(host);
    for (const host of this.agents) {
      const spec = host.spec as AgentSpec;
      this.unfinished += 1;
      this.engine.at(spec.joinAtMs, () => {
        this.start(host);
        for (const blob of this.blobs) this.fetch(host, blob);
      });
      if (spec.dieAtMs !== undefined) this.engine.at(spec.dieAtMs, () => this.kill(host));
      if (spec.rejoinAtMs !== undefined) {
        this.engine.at(spec.rejoinAtMs, () => {
          this.start(host);
          for (const blob of this.blobs) this.fetch(host, blob);
        });
      }
    }
    let lastReport = 0;
    await this.engine.run({
      untilMs: this.options.limitMs,
      done: () => {
        if (onProgress !== undefined && this.engine.now - lastReport >= 1000) {
          lastReport = this.engine.now;
          onProgress(this);
        }
        return this.unfinished === 0;
      },
    });
  }

  private jitter(): number {
    return this.options.jitterMs > 0 ? this.random() * this.options.jitterMs : 0;
  }

  get trackerAnnounces(): number {
    return this.trackers.reduce((n, t) => n + t.announces, 0);
  }

  // --- processes --------------------------------------------------------------------------------

  private start(host: SimHost): void {
    host.generation += 1;
    host.alive = true;
    const generation = host.generation;
    host.timers = this.engine.timers(() => host.alive && host.generation === generation);
  }

  /** The agent process dies: connections drop at once, swarms end without a goodbye. */
  private kill(host: SimHost): void {
    if (!host.alive) return;
    host.alive = false;
    host.diedAt = this.engine.now;
    host.generation += 1;
    for (const conn of host.connections) conn.kill();
    host.connections.clear();
    for (const download of host.swarms.values()) download.scheduler.close('host died');
    host.swarms.clear();
    // A host that will not come back is not waited for.
    if (!host.finished && host.spec?.rejoinAtMs === undefined) {
      host.finished = true;
      this.unfinished -= 1;
    }
  }

  /** The runtime asks the agent for a blob: metainfo from the tracker, then the swarm. */
  private fetch(host: SimHost, blob: BlobRun): void {
    const previous = host.downloads.get(blob.digest);
    const present = previous?.pieces.pieces;
    const rtt = 2 * this.trackerLatency(host) + this.options.trackerServiceMs;
    const generation = host.generation;
    this.engine.after(rtt, () => {
      if (!host.alive || host.generation !== generation) return;
      // The agent reads the blob back only when configured to, or when it resumed from
      // pieces it kept (they were not hashed on their way in).
      const verify = this.verifyDigest || (present !== undefined && present.count > 0);
      const pieces = new SimPieces({
        length: blob.metainfo.length,
        pieceLength: blob.metainfo.pieceLength,
        present,
        finalizeMs:
          verify && this.options.verifyBytesPerSecond > 0
            ? (blob.metainfo.length / this.options.verifyBytesPerSecond) * 1000
            : 0,
        wait: (ms) => new Promise((resolve) => host.timers.after(ms, resolve)),
      });
      this.join(host, blob, pieces, this.agentConfig);
    });
  }

  private join(
    host: SimHost,
    blob: BlobRun,
    pieces: SimPieces,
    config: Partial<SchedulerConfig>,
  ): Download {
    const scheduler = new BlobScheduler({
      metainfo: blob.metainfo,
      store: pieces,
      peerId: host.peerId,
      origin: host.origin,
      config,
      timers: host.timers,
      random: seededRandom(this.options.seed, 1000 + host.index * 16 + this.blobs.indexOf(blob)),
      connect: (address) => this.connect(host, address),
      onPeersWanted: () => download.wake?.(),
      ...(this.logger !== undefined && { logger: this.logger }),
    });
    const download: Download = { blob, scheduler, pieces, completedAt: undefined };
    host.swarms.set(blob.infoHash, download);
    if (!host.origin) {
      host.downloads.set(blob.digest, download);
      void scheduler.done.then(
        () => {
          download.completedAt = this.engine.now;
          this.onComplete(host);
        },
        () => undefined,
      );
    }
    void this.announceLoop(host, download);
    return download;
  }

  private onComplete(host: SimHost): void {
    if (host.finished) return;
    for (const blob of this.blobs) {
      if (host.downloads.get(blob.digest)?.completedAt === undefined) return;
    }
    host.finished = true;
    this.unfinished -= 1;
  }

  // --- connections ------------------------------------------------------------------------------

  /** TCP connect: a round trip; refused when no live agent listens at the address. */
  private connect(from: SimHost, address: string): Promise<WireConnection> {
    const target = this.byAddress.get(address);
    if (target === undefined) return Promise.reject(new Error(`no host ${address}`));
    const rtt = 2 * this.network.latency(from.index, target.index) + this.jitter();
    const generation = from.generation;
    return new Promise((resolve, reject) => {
      this.engine.after(rtt, () => {
        if (!from.alive || from.generation !== generation) {
          reject(new Error('dialer died'));
          return;
        }
        if (!target.alive) {
          reject(new Error(`connect ${address}: ECONNREFUSED`));
          return;
        }
        const [a, b] = SimConnection.pair(
          { engine: this.engine, network: this.network },
          { host: from.index, peerId: from.peerId, origin: from.origin },
          { host: target.index, peerId: target.peerId, origin: target.origin },
        );
        this.streamCounter += 1;
        this.track(from, a);
        this.track(target, b);
        this.accept(target, b);
        resolve(a);
      });
    });
  }

  private track(host: SimHost, conn: SimConnection): void {
    host.connections.add(conn);
    conn.on('close', () => host.connections.delete(conn));
  }

  /** The acceptor's side, as SwarmHost's `accept`: route the handshake to the swarm. */
  private accept(host: SimHost, conn: SimConnection): void {
    let target: BlobScheduler | undefined;
    void conn
      .accept(async (remote) => {
        const download = host.swarms.get(remote.infoHash);
        if (download === undefined || download.scheduler.closed) return undefined;
        target = download.scheduler;
        return target.admit(conn, remote);
      })
      .then((result) => {
        if (result.ok) target?.accepted(conn);
        else target?.acceptFailed(conn);
      });
  }

  // --- trackers ---------------------------------------------------------------------------------

  private trackerOf(blob: BlobRun): Tracker {
    const ids = this.trackers.map((t) => t.id);
    const first = rankMembers(blob.digest, ids)[0];
    return this.trackers.find((t) => t.id === first) as Tracker;
  }

  /** One way between a host and a tracker (trackers sit in the first zone). */
  private trackerLatency(host: SimHost): number {
    return this.network.zoneOf(host.index) === 0
      ? this.network.options.latencyMs
      : this.network.options.interZoneLatencyMs;
  }

  /** Origins that own at least one of the blobs (their upload is the seed capacity). */
  servingOrigins(): number {
    const ids = this.originHosts.map((o) => String(o.index));
    const serving = new Set<string>();
    for (const blob of this.blobs) {
      for (const id of ownersOf(blob.digest, ids, this.options.replicas)) serving.add(id);
    }
    return serving.size;
  }

  /** One announce: a round trip to the blob's tracker, answered by its real handler. */
  private announce(host: SimHost, blob: BlobRun, request: Announcement): Promise<AnnounceAnswer> {
    const tracker = this.trackerOf(blob);
    const oneWay = this.trackerLatency(host);
    return new Promise((resolve) => {
      this.engine.after(oneWay + this.options.trackerServiceMs, () => {
        tracker.announces += 1;
        void tracker.handle(request).then((answer) => {
          const peers: PeerCandidate[] = answer.peers.map((p) => ({ ...p }));
          this.engine.after(oneWay + this.jitter(), () =>
            resolve({ peers, intervalMs: answer.intervalMs }),
          );
        });
      });
    });
  }

  /**
   * A tracker asks the blob's owning origins to join its swarm (the seeder's
   * `POST /internal/p2p/swarms/:digest`): a round trip and `originJoinMs` later they have.
   */
  private joinOrigins(digest: string): Promise<SeederJoined[]> {
    const blob = this.blobs.find((b) => b.digest === digest) as BlobRun;
    const ids = this.originHosts.map((o) => String(o.index));
    const owners = ownersOf(digest, ids, this.options.replicas).map(
      (id) => this.originHosts.find((o) => String(o.index) === id) as SimHost,
    );
    const rtt = 2 * this.network.options.latencyMs + this.options.originJoinMs;
    return new Promise((resolve) => {
      this.engine.after(rtt, () => {
        resolve(
          owners.map((origin) => {
            const open = origin.swarms.get(blob.infoHash);
            if (open === undefined || open.scheduler.closed) {
              const pieces = new SimPieces({
                length: blob.metainfo.length,
                pieceLength: blob.metainfo.pieceLength,
                complete: true,
                wait: () => Promise.resolve(),
              });
              this.join(origin, blob, pieces, this.originConfig);
            }
            return { infoHash: blob.infoHash, peerId: origin.idHex, address: origin.address };
          }),
        );
      });
    });
  }

  /** SwarmHost's announce loop, on simulated time (see `p2p/swarm/swarmHost.ts`). */
  private async announceLoop(host: SimHost, download: Download): Promise<void> {
    const { scheduler, blob } = download;
    const generation = host.generation;
    const live = () => host.alive && host.generation === generation;
    const sleep = (ms: number) =>
      new Promise<void>((resolve) => {
        const cancel = host.timers.after(ms, () => {
          download.wake = undefined;
          resolve();
        });
        download.wake = () => {
          download.wake = undefined;
          cancel();
          resolve();
        };
      });
    const zoned = this.zoned;
    const announcement = (stopped: boolean): Announcement => ({
      infoHash: blob.infoHash,
      digest: blob.digest,
      peerId: host.idHex,
      address: host.address,
      complete: scheduler.complete,
      have: scheduler.have,
      origin: host.origin,
      // Agents name their zone when there are zones (`p2p.zone`), as an operator would.
      ...(zoned && host.spec !== undefined && { zone: `zone-${host.spec.zone}` }),
      ...(stopped && { stopped: true }),
    });
    void scheduler.done.then(
      () => download.wake?.(),
      () => undefined,
    );
    let announcedComplete = scheduler.complete;
    while (!scheduler.closed && live()) {
      const answer = await this.announce(host, blob, announcement(false));
      if (!live()) return;
      announcedComplete = announcement(false).complete;
      if (!scheduler.complete) scheduler.addPeers(answer.peers);
      const wait = Math.min(Math.max(answer.intervalMs, 50), 60_000);
      if (scheduler.closed) break;
      if (scheduler.complete && !announcedComplete) continue;
      await sleep(wait);
    }
    if (live()) await this.announce(host, blob, announcement(true));
  }
}

const zoneCount = (agents: readonly AgentSpec[]) =>
  agents.reduce((n, a) => Math.max(n, a.zone + 1), 1);

/** The tracker's announce settings: its config schema's defaults, a scenario's overrides. */
const announceSettings = (overrides: Record<string, number>) => {
  const announce = validateConfig(TrackerConfigSchema, { announce: overrides }).announce;
  return { ...announce, peerTtlMs: announce.peerTtlMs || 3 * announce.intervalMs };
};

/** A blob of `length` bytes: its digest, piece length (Shoal's rule) and metainfo. */
const blobOf = (seed: number, k: number, length: number): BlobRun => {
  const hex = createHash('sha256').update(`shoal-sim-blob:${seed}:${k}`).digest('hex');
  const pieceLength = pieceLengthFor(length);
  const count = Math.ceil(length / pieceLength);
  const metainfo: Metainfo = {
    digest: `sha256:${hex}`,
    length,
    pieceLength,
    pieceHashes: Array.from({ length: count }, () => hex),
  };
  return { digest: metainfo.digest, metainfo, infoHash: infoHashOf(metainfo) };
};

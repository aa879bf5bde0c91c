import type { NetworkOptions } from './network';
import type { Random } from './random';
import { seededRandom, shuffle } from './random';
import type { AgentSpec, WorldOptions } from './world';

/*
 * The scenarios of `npm run sim`. Each builds a world from a host count and a seed; what
 * differs between them is the fleet (rates, join times, deaths, zones) and the image. The
 * fleet defaults follow Kraken's published run (the benchmark in Kraken's README): a 3 GB
 * image in 2 layers, 300 MB/s per agent, 5 origins and 5 trackers; origins are 10 GbE hosts
 * (Kraken does not throttle origins), holding each blob on Shoal's default 2 replicas.
 */

export type ScenarioName =
  'kraken' | 'fleet' | 'rolling' | 'churn' | 'slow' | 'huge' | 'zones' | 'calibration';

export type Scenario = {
  readonly name: ScenarioName;
  readonly summary: string;
  readonly defaultHosts: number;
  /** The world, and which hosts count as impaired (slow, or dying). */
  build(hosts: number, seed: number): { world: WorldOptions; slow: Set<number> };
};

const GB = 1e9;
const MiB = 1024 * 1024;

/** The datacenter network: 0.25 ms one way in a zone, 1 ms between zones. */
const datacenter = (overrides: Partial<NetworkOptions> = {}): NetworkOptions => ({
  stepMs: 5,
  // The scheduler reads block times against 1 s (busyBackoffMs) and 4 s (request timeout).
  blockEveryMs: 200,
  latencyMs: 0.25,
  interZoneLatencyMs: 1,
  // 8 rounds: within 0.5 % of exact max-min on kraken at 200 hosts (p50, p99, origin egress).
  allocation: 'iterative',
  passes: 8,
  sendBufferBytes: 512 * 1024,
  ...overrides,
});

const fleetWorld = (
  seed: number,
  agents: AgentSpec[],
  overrides: Partial<WorldOptions> = {},
): WorldOptions => ({
  seed,
  // 50 µs: a quarter of the one-way latency; results match a 10 µs grid (kraken, 100 hosts).
  gridMs: 0.05,
  network: datacenter(),
  agents,
  origins: { count: 5, up: 1.25 * GB },
  trackers: 5,
  replicas: 2,
  blobs: [1.5 * GB, 1.5 * GB],
  // The whole-blob SHA-256 check at the end: 1.57–1.81 GB/s measured here (perf.md §4.1).
  verifyBytesPerSecond: 1.7 * GB,
  trackerServiceMs: 0.2,
  originJoinMs: 5,
  jitterMs: 1,
  limitMs: 900_000,
  ...overrides,
});

/** `count` agents at `rate` bytes/s each way, joining uniformly over `spreadMs`. */
const agentsOf = (count: number, rate: number, spreadMs: number, random: Random): AgentSpec[] =>
  Array.from({ length: count }, () => ({
    up: rate,
    down: rate,
    zone: 0,
    joinAtMs: random() * spreadMs,
  }));

const agentRate = 300e6;

export const scenarios: Record<ScenarioName, Scenario> = {
  kraken: {
    name: 'kraken',
    summary:
      "Kraken's published run: 2,600 hosts, 3 GB in 2 layers, 300 MB/s per agent, 5 origins " +
      'and trackers, joins within 1 s (Kraken: p50 10 s, p99 18 s, p99.9 22 s)',
    defaultHosts: 2600,
    build: (hosts, seed) => ({
      world: fleetWorld(seed, agentsOf(hosts, agentRate, 1000, seededRandom(seed, 2))),
      slow: new Set(),
    }),
  },
  fleet: {
    name: 'fleet',
    summary: 'the same image to 15,000 hosts at once (joins within 1 s)',
    defaultHosts: 15_000,
    build: (hosts, seed) => ({
      world: fleetWorld(seed, agentsOf(hosts, agentRate, 1000, seededRandom(seed, 2))),
      slow: new Set(),
    }),
  },
  rolling: {
    name: 'rolling',
    summary: 'a deployment wave: hosts join uniformly over 60 s',
    defaultHosts: 15_000,
    build: (hosts, seed) => ({
      world: fleetWorld(seed, agentsOf(hosts, agentRate, 60_000, seededRandom(seed, 2))),
      slow: new Set(),
    }),
  },
  churn: {
    name: 'churn',
    summary:
      '5 % of the agents die mid-pull (between 1 and 8 s after joining) and 2 % of all ' +
      'come back 5–10 s later, resuming from the pieces they kept',
    defaultHosts: 15_000,
    build: (hosts, seed) => {
      const random = seededRandom(seed, 3);
      const agents = agentsOf(hosts, agentRate, 1000, seededRandom(seed, 2));
      const order = shuffle(
        Array.from({ length: hosts }, (_, i) => i),
        random,
      );
      const dying = order.slice(0, Math.round(0.05 * hosts));
      const back = new Set(dying.slice(0, Math.round(0.02 * hosts)));
      for (const i of dying) {
        const agent = agents[i] as AgentSpec;
        const dieAtMs = agent.joinAtMs + 1000 + random() * 7000;
        agents[i] = {
          ...agent,
          dieAtMs,
          ...(back.has(i) && { rejoinAtMs: dieAtMs + 5000 + random() * 5000 }),
        };
      }
      return { world: fleetWorld(seed, agents), slow: new Set(dying) };
    },
  },
  slow: {
    name: 'slow',
    summary: '10 % of the hosts have a tenth of the bandwidth (30 MB/s each way)',
    defaultHosts: 15_000,
    build: (hosts, seed) => {
      const random = seededRandom(seed, 3);
      const agents = agentsOf(hosts, agentRate, 1000, seededRandom(seed, 2));
      const order = shuffle(
        Array.from({ length: hosts }, (_, i) => i),
        random,
      );
      const slow = new Set(order.slice(0, Math.round(0.1 * hosts)));
      for (const i of slow) {
        const agent = agents[i] as AgentSpec;
        agents[i] = { ...agent, up: agentRate / 10, down: agentRate / 10 };
      }
      return { world: fleetWorld(seed, agents), slow };
    },
  },
  huge: {
    name: 'huge',
    summary: 'one 100 GiB blob to 1,000 hosts (16 MiB pieces: 6,400 of them)',
    defaultHosts: 1000,
    build: (hosts, seed) => ({
      world: fleetWorld(seed, agentsOf(hosts, agentRate, 1000, seededRandom(seed, 2)), {
        blobs: [100 * 1024 * MiB],
        network: datacenter({ stepMs: 10 }),
      }),
      slow: new Set(),
    }),
  },
  zones: {
    name: 'zones',
    summary:
      '3 zones; traffic between zones shares each zone’s uplink and downlink, capped at a ' +
      'tenth of the zone’s agents’ capacity (10:1 oversubscription); 1 ms between zones',
    defaultHosts: 15_000,
    build: (hosts, seed) => {
      const agents = agentsOf(hosts, agentRate, 1000, seededRandom(seed, 2)).map((a, i) => ({
        ...a,
        zone: i % 3,
      }));
      const cap = ((hosts / 3) * agentRate) / 10;
      return {
        world: fleetWorld(seed, agents, {
          network: datacenter({ zoneUp: [cap, cap, cap], zoneDown: [cap, cap, cap] }),
        }),
        slow: new Set(),
      };
    },
  },
  calibration: {
    name: 'calibration',
    summary:
      "`npm run bench:p2p`'s swarm: N agents on one machine's loopback, 32 MiB in one layer, " +
      'each agent at 32 MiB/s ÷ N, the origin at 4 × that, announce interval 1 s',
    defaultHosts: 8,
    build: (hosts, seed) => {
      const rate = (32 * MiB) / hosts;
      return {
        world: {
          seed,
          // Node processes on one machine: a message takes an event-loop turn or so.
          network: {
            stepMs: 1,
            blockEveryMs: 50,
            latencyMs: 0.5,
            interZoneLatencyMs: 0.5,
            allocation: 'exact',
            passes: 4,
            sendBufferBytes: 512 * 1024,
          },
          agents: Array.from({ length: hosts }, () => ({
            up: rate,
            down: rate,
            zone: 0,
            joinAtMs: 0,
          })),
          origins: { count: 1, up: 4 * rate },
          trackers: 1,
          replicas: 1,
          blobs: [32 * MiB],
          announce: { intervalMs: 1000 },
          verifyBytesPerSecond: 1.7 * GB,
          trackerServiceMs: 1,
          originJoinMs: 5,
          jitterMs: 2,
          limitMs: 600_000,
        },
        slow: new Set(),
      };
    },
  },
};

export const scenarioNames = Object.keys(scenarios) as ScenarioName[];

import { KeyedMinHeap } from '../../kit/collections';

/** One peer of one swarm, as its last announce described it. */
export type PeerEntry = {
  readonly peerId: string;
  readonly address: string;
  readonly origin: boolean;
  readonly complete: boolean;
  readonly have: number;
  readonly expiresAt: number;
  /** The announce interval last handed to this peer (0: none yet). */
  readonly intervalMs: number;
};

export type HandoutPeer = Pick<PeerEntry, 'peerId' | 'address' | 'origin' | 'complete'>;

/**
 * The tracker's soft state: peers by info hash, each dropped `ttlMs` (or three of its
 * announce intervals, if longer) after its last announce (or at once when it says it
 * stopped). Nothing is persisted: after a restart the swarms re-form from the next announces.
 * Time and randomness come in, so the rules are testable.
 *
 * An announce costs O(handout + log swarm), not O(swarm): agents sit in a dense array
 * (random picks by index), complete agents are counted as they come and go, and expiry is a
 * heap of deadlines read from the top (a re-announce pushes a new deadline; the old one is
 * skipped when it surfaces). A swarm of 15,000 agents announcing at once made a scan per
 * announce quadratic — the simulator found it.
 */
export const createPeerStore = (options: {
  ttlMs: number;
  now: () => number;
  random?: () => number;
}) => {
  const swarms = new Map<string, Swarm>();
  const random = options.random ?? Math.random;

  /** The swarm with its expired peers dropped; undefined (and forgotten) when empty. */
  const live = (infoHash: string): Swarm | undefined => {
    const swarm = swarms.get(infoHash);
    if (swarm === undefined) return undefined;
    expire(swarm, options.now());
    if (swarm.entries.size === 0) {
      swarms.delete(infoHash);
      return undefined;
    }
    return swarm;
  };

  /** `n` distinct random agents other than `self`, in random order. */
  const sampleAgents = (swarm: Swarm, self: string, n: number): PeerEntry[] => {
    const agents = swarm.agents;
    const selfAt = swarm.agentAt.get(self) ?? -1;
    const others = agents.length - (selfAt >= 0 ? 1 : 0);
    const k = Math.min(n, others);
    if (k <= 0) return [];
    if (4 * k >= others) {
      // A small swarm: a partial Fisher–Yates over a copy.
      const pool = selfAt >= 0 ? agents.filter((_, i) => i !== selfAt) : [...agents];
      return partialShuffle(pool, k, random);
    }
    // A large one: random indices, redrawn on self or a repeat (fewer than 4/3 draws each).
    const picked = new Set<number>();
    const out: PeerEntry[] = [];
    while (out.length < k) {
      const i = Math.floor(random() * agents.length);
      if (i === selfAt || picked.has(i)) continue;
      picked.add(i);
      out.push(agents[i] as PeerEntry);
    }
    return out;
  };

  return {
    /** Records an announce (or forgets the peer when it stopped). */
    announce(
      infoHash: string,
      peer: Omit<PeerEntry, 'expiresAt' | 'intervalMs'> & { readonly stopped?: boolean },
    ): void {
      if (peer.stopped) {
        const swarm = swarms.get(infoHash);
        if (swarm === undefined) return;
        remove(swarm, peer.peerId);
        if (swarm.entries.size === 0) swarms.delete(infoHash);
        return;
      }
      let swarm = swarms.get(infoHash);
      if (swarm === undefined) swarms.set(infoHash, (swarm = newSwarm()));
      const intervalMs = swarm.entries.get(peer.peerId)?.intervalMs ?? 0;
      put(swarm, {
        peerId: peer.peerId,
        address: peer.address,
        origin: peer.origin,
        complete: peer.complete,
        have: peer.have,
        expiresAt: options.now() + Math.max(options.ttlMs, 3 * intervalMs),
        intervalMs,
      });
    },

    /** The interval last handed to a live peer, or undefined for a peer not (yet) known. */
    intervalOf(infoHash: string, peerId: string): number | undefined {
      const entry = swarms.get(infoHash)?.entries.get(peerId);
      return entry === undefined || entry.intervalMs === 0 ? undefined : entry.intervalMs;
    },

    /**
     * Records the interval handed to a peer: it stays listed for three of them (or `ttlMs`,
     * if longer), so a peer told to announce less often is not dropped in between.
     */
    setInterval(infoHash: string, peerId: string, intervalMs: number): void {
      const swarm = swarms.get(infoHash);
      const entry = swarm?.entries.get(peerId);
      if (swarm === undefined || entry === undefined) return;
      const expiresAt = options.now() + Math.max(options.ttlMs, 3 * intervalMs);
      put(swarm, { ...entry, intervalMs, expiresAt });
    },

    /**
     * Peers for an announcer: a random subset of `size` agents other than itself, plus the
     * origins when `withOrigins`; ordered complete agents, origins, then the rest (peers dial
     * in order until their slots are full).
     */
    handout(
      infoHash: string,
      self: string,
      size: number,
      withOrigins: (completeAgents: number) => boolean,
    ): HandoutPeer[] {
      const swarm = live(infoHash);
      if (swarm === undefined) return [];
      const chosen = sampleAgents(swarm, self, size);
      const origins = withOrigins(swarm.completeAgents)
        ? partialShuffle([...swarm.origins.values()], swarm.origins.size, random)
        : [];
      const out = [
        ...chosen.filter((p) => p.complete),
        ...origins.filter((p) => p.peerId !== self),
        ...chosen.filter((p) => !p.complete),
      ];
      return out.map(({ peerId, address, origin, complete }) => ({
        peerId,
        address,
        origin,
        complete,
      }));
    },

    /** Live origins and complete agents of a swarm. */
    counts(infoHash: string): { peers: number; origins: number; completeAgents: number } {
      const swarm = live(infoHash);
      if (swarm === undefined) return { peers: 0, origins: 0, completeAgents: 0 };
      return {
        peers: swarm.entries.size,
        origins: swarm.origins.size,
        completeAgents: swarm.completeAgents,
      };
    },

    /** Drops expired peers and empty swarms (a timer calls it). */
    sweep(): void {
      for (const infoHash of [...swarms.keys()]) live(infoHash);
    },

    size(): { swarms: number; peers: number } {
      let peers = 0;
      for (const swarm of swarms.values()) peers += swarm.entries.size;
      return { swarms: swarms.size, peers };
    },
  };
};

/** One swarm's peers, indexed for O(1) random picks and counts. */
type Swarm = {
  readonly entries: Map<string, PeerEntry>;
  /** Agents (not origins), dense; `agentAt` is each one's index. */
  readonly agents: PeerEntry[];
  readonly agentAt: Map<string, number>;
  readonly origins: Map<string, PeerEntry>;
  completeAgents: number;
  /** Deadlines pushed on every change of a peer's `expiresAt` (a min-heap on `at`). */
  readonly deadlines: KeyedMinHeap<string>;
};

const newSwarm = (): Swarm => ({
  entries: new Map(),
  agents: [],
  agentAt: new Map(),
  origins: new Map(),
  completeAgents: 0,
  deadlines: new KeyedMinHeap<string>(),
});

/** Adds or replaces a peer's entry. */
const put = (swarm: Swarm, entry: PeerEntry): void => {
  let before = swarm.entries.get(entry.peerId);
  if (before !== undefined && before.origin !== entry.origin) {
    remove(swarm, entry.peerId);
    before = undefined;
  }
  swarm.entries.set(entry.peerId, entry);
  if (entry.origin) swarm.origins.set(entry.peerId, entry);
  else {
    const at = swarm.agentAt.get(entry.peerId);
    if (at === undefined) {
      swarm.agentAt.set(entry.peerId, swarm.agents.length);
      swarm.agents.push(entry);
    } else swarm.agents[at] = entry;
    swarm.completeAgents += (entry.complete ? 1 : 0) - (before?.complete === true ? 1 : 0);
  }
  if (before?.expiresAt !== entry.expiresAt) swarm.deadlines.push(entry.expiresAt, entry.peerId);
};

const remove = (swarm: Swarm, peerId: string): void => {
  const entry = swarm.entries.get(peerId);
  if (entry === undefined) return;
  swarm.entries.delete(peerId);
  if (entry.origin) {
    swarm.origins.delete(peerId);
    return;
  }
  if (entry.complete) swarm.completeAgents -= 1;
  const at = swarm.agentAt.get(peerId) as number;
  swarm.agentAt.delete(peerId);
  const last = swarm.agents.pop() as PeerEntry;
  if (at < swarm.agents.length) {
    swarm.agents[at] = last;
    swarm.agentAt.set(last.peerId, at);
  }
};

/** Drops the peers whose current deadline has passed (stale deadlines are skipped). */
const expire = (swarm: Swarm, now: number): void => {
  const deadlines = swarm.deadlines;
  for (let at = deadlines.topKey(); at !== undefined && at <= now; at = deadlines.topKey()) {
    const peerId = deadlines.pop() as string;
    if (swarm.entries.get(peerId)?.expiresAt === at) remove(swarm, peerId);
  }
};

/** The first `k` of `items` after a partial Fisher–Yates shuffle (in place). */
const partialShuffle = <T>(items: T[], k: number, random: () => number): T[] => {
  const n = Math.min(k, items.length);
  for (let i = 0; i < n; i += 1) {
    const j = i + Math.floor(random() * (items.length - i));
    [items[i], items[j]] = [items[j] as T, items[i] as T];
  }
  return items.slice(0, n);
};

export type PeerStore = ReturnType<typeof createPeerStore>;

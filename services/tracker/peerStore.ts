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
  /** The zone the peer announced (see `Announcement.zone`), or absent. */
  readonly zone?: string;
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

  /**
   * Up to `n` distinct random agents of `group` that are not in `skip` (`self` and the ones
   * already chosen), in random order.
   */
  const sampleAgents = (group: AgentGroup, skip: ReadonlySet<string>, n: number): PeerEntry[] => {
    const agents = group.agents;
    let skipped = 0;
    for (const id of skip) if (group.at.has(id)) skipped += 1;
    const others = agents.length - skipped;
    const k = Math.min(n, others);
    if (k <= 0) return [];
    if (4 * k >= others) {
      // A small group: a partial Fisher–Yates over a copy.
      const pool = skipped > 0 ? agents.filter((a) => !skip.has(a.peerId)) : [...agents];
      return partialShuffle(pool, k, random);
    }
    // A large one: random indices, redrawn on a skipped one or a repeat (fewer than 4/3
    // draws each).
    const picked = new Set<number>();
    const out: PeerEntry[] = [];
    while (out.length < k) {
      const i = Math.floor(random() * agents.length);
      const agent = agents[i] as PeerEntry;
      if (picked.has(i) || skip.has(agent.peerId)) continue;
      picked.add(i);
      out.push(agent);
    }
    return out;
  };

  /**
   * `size` agents for `self`: `sameZoneShare` of them (rounded up) from its zone while it has
   * enough, the rest from the whole swarm.
   */
  const chooseAgents = (
    swarm: Swarm,
    self: string,
    size: number,
    zone: string | undefined,
    sameZoneShare: number,
  ): PeerEntry[] => {
    const skip = new Set([self]);
    const group = zone === undefined ? undefined : swarm.zones.get(zone);
    const local =
      group === undefined || sameZoneShare <= 0
        ? []
        : sampleAgents(group, skip, Math.ceil(size * sameZoneShare));
    if (local.length === size) return local;
    for (const agent of local) skip.add(agent.peerId);
    return [...local, ...sampleAgents(swarm.all, skip, size - local.length)];
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
        ...(peer.zone !== undefined && { zone: peer.zone }),
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
     * Peers for an announcer: a random subset of `size` agents other than itself — with a
     * `zone`, `sameZoneShare` of them from that zone while it has enough — plus the origins
     * when `withOrigins`; ordered complete agents, origins, then the rest (peers dial in order
     * until their slots are full).
     */
    handout(
      infoHash: string,
      self: string,
      size: number,
      withOrigins: (completeAgents: number) => boolean,
      zone?: { readonly name: string | undefined; readonly sameZoneShare: number },
    ): HandoutPeer[] {
      const swarm = live(infoHash);
      if (swarm === undefined) return [];
      const chosen = chooseAgents(swarm, self, size, zone?.name, zone?.sameZoneShare ?? 0);
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

/** Agents, dense (for random picks by index); `at` is each one's index. */
type AgentGroup = { readonly agents: PeerEntry[]; readonly at: Map<string, number> };

const newGroup = (): AgentGroup => ({ agents: [], at: new Map() });

/** Adds or replaces an agent in a group. */
const putIn = (group: AgentGroup, entry: PeerEntry): void => {
  const at = group.at.get(entry.peerId);
  if (at === undefined) {
    group.at.set(entry.peerId, group.agents.length);
    group.agents.push(entry);
  } else group.agents[at] = entry;
};

/** Removes an agent from a group (the last one takes its place). */
const removeFrom = (group: AgentGroup, peerId: string): void => {
  const at = group.at.get(peerId);
  if (at === undefined) return;
  group.at.delete(peerId);
  const last = group.agents.pop() as PeerEntry;
  if (at < group.agents.length) {
    group.agents[at] = last;
    group.at.set(last.peerId, at);
  }
};

/** One swarm's peers, indexed for O(1) random picks and counts. */
type Swarm = {
  readonly entries: Map<string, PeerEntry>;
  /** Every agent (not origins), and the agents of each zone. */
  readonly all: AgentGroup;
  readonly zones: Map<string, AgentGroup>;
  readonly origins: Map<string, PeerEntry>;
  completeAgents: number;
  /** Deadlines pushed on every change of a peer's `expiresAt` (a min-heap on `at`). */
  readonly deadlines: KeyedMinHeap<string>;
};

const newSwarm = (): Swarm => ({
  entries: new Map(),
  all: newGroup(),
  zones: new Map(),
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
    putIn(swarm.all, entry);
    if (before?.zone !== undefined && before.zone !== entry.zone) {
      leaveZone(swarm, before.zone, entry.peerId);
    }
    if (entry.zone !== undefined) {
      let group = swarm.zones.get(entry.zone);
      if (group === undefined) swarm.zones.set(entry.zone, (group = newGroup()));
      putIn(group, entry);
    }
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
  removeFrom(swarm.all, peerId);
  if (entry.zone !== undefined) leaveZone(swarm, entry.zone, peerId);
};

const leaveZone = (swarm: Swarm, zone: string, peerId: string): void => {
  const group = swarm.zones.get(zone);
  if (group === undefined) return;
  removeFrom(group, peerId);
  if (group.agents.length === 0) swarm.zones.delete(zone);
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

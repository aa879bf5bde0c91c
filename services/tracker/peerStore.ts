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
 * announce intervals, if longer) after its last announce (or at once when it says it stopped). Nothing is persisted: after a restart the swarms
 * re-form from the next announces. Time and randomness come in, so the rules are testable.
 */
export const createPeerStore = (options: {
  ttlMs: number;
  now: () => number;
  random?: () => number;
}) => {
  const swarms = new Map<string, Map<string, PeerEntry>>();
  const random = options.random ?? Math.random;

  const live = (infoHash: string): Map<string, PeerEntry> | undefined => {
    const swarm = swarms.get(infoHash);
    if (swarm === undefined) return undefined;
    const now = options.now();
    for (const [id, entry] of swarm) if (entry.expiresAt <= now) swarm.delete(id);
    if (swarm.size === 0) {
      swarms.delete(infoHash);
      return undefined;
    }
    return swarm;
  };

  /** Partial Fisher–Yates: `n` random entries of `items`, in random order. */
  const sample = <T>(items: T[], n: number): T[] => {
    const out = [...items];
    const k = Math.min(n, out.length);
    for (let i = 0; i < k; i += 1) {
      const j = i + Math.floor(random() * (out.length - i));
      [out[i], out[j]] = [out[j] as T, out[i] as T];
    }
    return out.slice(0, k);
  };

  return {
    /** Records an announce (or forgets the peer when it stopped). */
    announce(
      infoHash: string,
      peer: Omit<PeerEntry, 'expiresAt' | 'intervalMs'> & { readonly stopped?: boolean },
    ): void {
      if (peer.stopped) {
        const swarm = swarms.get(infoHash);
        swarm?.delete(peer.peerId);
        if (swarm?.size === 0) swarms.delete(infoHash);
        return;
      }
      let swarm = swarms.get(infoHash);
      if (swarm === undefined) swarms.set(infoHash, (swarm = new Map()));
      const intervalMs = swarm.get(peer.peerId)?.intervalMs ?? 0;
      swarm.set(peer.peerId, {
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
      const entry = swarms.get(infoHash)?.get(peerId);
      return entry === undefined || entry.intervalMs === 0 ? undefined : entry.intervalMs;
    },

    /**
     * Records the interval handed to a peer: it stays listed for three of them (or `ttlMs`,
     * if longer), so a peer told to announce less often is not dropped in between.
     */
    setInterval(infoHash: string, peerId: string, intervalMs: number): void {
      const swarm = swarms.get(infoHash);
      const entry = swarm?.get(peerId);
      if (swarm === undefined || entry === undefined) return;
      const expiresAt = options.now() + Math.max(options.ttlMs, 3 * intervalMs);
      swarm.set(peerId, { ...entry, intervalMs, expiresAt });
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
      const agents: PeerEntry[] = [];
      const origins: PeerEntry[] = [];
      let completeAgents = 0;
      for (const entry of swarm.values()) {
        if (entry.origin) origins.push(entry);
        else {
          if (entry.complete) completeAgents += 1;
          if (entry.peerId !== self) agents.push(entry);
        }
      }
      const chosen = sample(agents, size);
      const out = [
        ...chosen.filter((p) => p.complete),
        ...(withOrigins(completeAgents) ? sample(origins, origins.length) : []),
        ...chosen.filter((p) => !p.complete),
      ].filter((p) => p.peerId !== self);
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
      let origins = 0;
      let completeAgents = 0;
      for (const entry of swarm?.values() ?? []) {
        if (entry.origin) origins += 1;
        else if (entry.complete) completeAgents += 1;
      }
      return { peers: swarm?.size ?? 0, origins, completeAgents };
    },

    /** Drops expired peers and empty swarms (a timer calls it). */
    sweep(): void {
      for (const infoHash of [...swarms.keys()]) live(infoHash);
    },

    size(): { swarms: number; peers: number } {
      let peers = 0;
      for (const swarm of swarms.values()) peers += swarm.size;
      return { swarms: swarms.size, peers };
    },
  };
};

export type PeerStore = ReturnType<typeof createPeerStore>;

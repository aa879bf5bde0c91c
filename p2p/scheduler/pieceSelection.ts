/**
 * Rarest-first piece choice with random ties (Legout et al.; Kraken's `rarest_first`): among
 * the eligible pieces, those with the lowest rank (how many neighbours hold them) first; among
 * equals, uniformly at random (reservoir sampling), so peers that see the same availability
 * still ask for different pieces. Pure: the rank, eligibility and randomness come in.
 * Eligibility is asked once per candidate (the candidates are every piece unless the caller
 * narrows them: the pieces a peer has that we lack); each of the `count` picks (a pipeline's
 * worth, ≤ 64) then scans the eligible ones.
 */
export const pickRarest = (input: {
  readonly count: number;
  readonly pieceCount: number;
  /** The only indices that may be eligible, ascending (default: 0 … pieceCount − 1). */
  readonly candidates?: readonly number[];
  readonly eligible: (index: number) => boolean;
  /** Lower is picked first: usually the number of connected peers holding the piece. */
  readonly rank: (index: number) => number;
  /** [0, 1) */
  readonly random: () => number;
}): number[] => {
  const picked: number[] = [];
  if (input.count <= 0) return picked;
  const { candidates } = input;
  const size = candidates === undefined ? input.pieceCount : candidates.length;
  const pool: number[] = [];
  for (let i = 0; i < size; i += 1) {
    const index = candidates === undefined ? i : (candidates[i] as number);
    if (input.eligible(index)) pool.push(index);
  }
  const taken = new Set<number>();
  for (let n = 0; n < input.count; n += 1) {
    let best = -1;
    let bestRank = Number.POSITIVE_INFINITY;
    let ties = 0;
    for (const index of pool) {
      if (taken.has(index)) continue;
      const rank = input.rank(index);
      if (rank < bestRank) {
        best = index;
        bestRank = rank;
        ties = 1;
      } else if (rank === bestRank) {
        ties += 1;
        if (input.random() * ties < 1) best = index;
      }
    }
    if (best < 0) break;
    picked.push(best);
    taken.add(best);
  }
  return picked;
};

/**
 * The request timeout of one piece: at least `minMs`, plus `perMiBMs` per MiB of its length
 * (Kraken: max(4 s, 4 s/MiB × piece MiB)).
 */
export const requestTimeoutOf = (pieceLength: number, minMs: number, perMiBMs: number): number =>
  Math.max(minMs, Math.ceil((perMiBMs * pieceLength) / (1024 * 1024)));

/**
 * Connection slots of one blob: `max` in all; incoming peers may not take the last
 * `reservedOutbound` while we still dial (a fresh peer filled up by incoming connections
 * before it processed its own tracker answer never reaches seeders: Kraken #162); our dials
 * may not take the last `reservedInbound` (later joiners must be able to reach us).
 */
export const slotPolicy = {
  canAccept: (s: SlotCounts): boolean =>
    s.inbound + s.outbound < s.max &&
    s.inbound < s.max - (s.dialing ? Math.min(s.reservedOutbound, s.max - 1) : 0),
  canDial: (s: SlotCounts): boolean =>
    s.dialing &&
    s.inbound + s.outbound < s.max &&
    s.outbound < s.max - Math.min(s.reservedInbound, s.max - 1),
};

export type SlotCounts = {
  readonly max: number;
  readonly reservedOutbound: number;
  readonly reservedInbound: number;
  /** Connections (open or pending) we accepted / dialed. */
  readonly inbound: number;
  readonly outbound: number;
  /** Whether this peer still dials (it is downloading); seeders and origins only accept. */
  readonly dialing: boolean;
};

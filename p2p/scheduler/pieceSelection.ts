/**
 * Rarest-first piece choice with random ties (Legout et al.; Kraken's `rarest_first`): among
 * the eligible pieces, those with the lowest rank (how many neighbours hold them) first; among
 * equals, in a uniformly random order, so peers that see the same availability still ask for
 * different pieces. Pure: the rank, eligibility and randomness come in.
 *
 * One pass over the candidates (every piece unless the caller narrows them: the pieces a peer
 * has that we lack) keeps the `count` smallest keys, a key being the rank plus a uniform draw
 * in [0, 1): the `count` rarest pieces, ties in random order. Eligibility — the costly
 * question — is asked only of a candidate whose key would enter the kept set, so a call costs
 * one rank read and one draw per candidate and about count · ln(candidates) eligibility checks
 * (it runs for every piece received: hundreds of candidates each time in a young swarm).
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
  const count = Math.min(input.count, maxPicks);
  if (count <= 0) return [];
  const { candidates, eligible, rank, random } = input;
  const size = candidates === undefined ? input.pieceCount : candidates.length;
  // The kept picks, ascending by key; `worst` is the key a newcomer must beat once full.
  const keys = keysScratch;
  const picks = picksScratch;
  let kept = 0;
  let worst = Number.POSITIVE_INFINITY;
  for (let i = 0; i < size; i += 1) {
    const index = candidates === undefined ? i : (candidates[i] as number);
    const r = rank(index);
    if (r >= worst) continue;
    const key = r + random();
    if (key >= worst || !eligible(index)) continue;
    // Insert in order; the last one drops out when full.
    let at = kept < count ? kept : count - 1;
    while (at > 0 && (keys[at - 1] as number) > key) {
      keys[at] = keys[at - 1] as number;
      picks[at] = picks[at - 1] as number;
      at -= 1;
    }
    keys[at] = key;
    picks[at] = index;
    if (kept < count) kept += 1;
    if (kept === count) worst = keys[count - 1] as number;
  }
  return Array.from(picks.subarray(0, kept));
};

/** The most picks one call returns (a request pipeline is at most 64 deep). */
const maxPicks = 256;
const keysScratch = new Float64Array(maxPicks);
const picksScratch = new Int32Array(maxPicks);

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

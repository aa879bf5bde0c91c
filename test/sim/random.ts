/**
 * Seeded pseudo-random numbers (sfc32, seeded through splitmix32): every random choice of a
 * run — the schedulers' tie-breaks, the tracker's samples, join times, which hosts are slow
 * or die — comes from a stream derived from the run's seed, so a run is reproducible.
 */
export type Random = () => number;

const splitmix32 = (seed: number) => {
  let state = seed >>> 0;
  return (): number => {
    state = (state + 0x9e3779b9) >>> 0;
    let z = state;
    z = Math.imul(z ^ (z >>> 16), 0x85ebca6b) >>> 0;
    z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35) >>> 0;
    return (z ^ (z >>> 16)) >>> 0;
  };
};

/** A generator in [0, 1) for `seed` and a `stream` number (independent streams per use). */
export const seededRandom = (seed: number, stream = 0): Random => {
  const mix = splitmix32((seed >>> 0) ^ Math.imul(stream + 1, 0x27d4eb2d));
  let a = mix();
  let b = mix();
  let c = mix();
  let d = mix();
  const next = (): number => {
    const t = (((a + b) >>> 0) + d) >>> 0;
    d = (d + 1) >>> 0;
    a = b ^ (b >>> 9);
    b = (c + (c << 3)) >>> 0;
    c = ((c << 21) | (c >>> 11)) >>> 0;
    c = (c + t) >>> 0;
    return t / 4294967296;
  };
  for (let i = 0; i < 12; i += 1) next();
  return next;
};

/** Fisher–Yates shuffle of `items` in place. */
export const shuffle = <T>(items: T[], random: Random): T[] => {
  for (let i = items.length - 1; i > 0; i -= 1) {
    const j = Math.floor(random() * (i + 1));
    [items[i], items[j]] = [items[j] as T, items[i] as T];
  }
  return items;
};

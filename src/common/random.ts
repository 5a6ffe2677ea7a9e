/** The largest seed: seeds are 32-bit, the PRNG's state. */
export const MAX_SEED = 0xffffffff;

/** A seeded PRNG (Mulberry32) in [0, 1): reproducible "random" baselines and sampled answers. */
export function seededRandom(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

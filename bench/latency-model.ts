/**
 * Service times of the bench replicas (B3): a log-normal around a median, the usual model of
 * request latency (its long right tail is what "The Tail at Scale", Dean & Barroso 2013, is about),
 * drawn from a seeded generator so that every run of a replica draws the same sequence.
 */

/** Spread (σ of the underlying normal) of a replica's latency: p99 ≈ 2× the median. */
export const LATENCY_SIGMA = 0.3;

/**
 * A seeded uniform generator on [0, 1): mulberry32 (Tommy Ettinger's 32-bit generator, public
 * domain), small and good enough to draw latencies; not for anything that needs real randomness.
 */
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

/** One log-normal draw (ms) with median `medianMs`, via Box–Muller on `random`. */
export function logNormalMs(medianMs: number, random: () => number, sigma = LATENCY_SIGMA): number {
  if (medianMs <= 0) return 0;
  const u = Math.max(random(), Number.EPSILON);
  const normal = Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * random());
  return medianMs * Math.exp(sigma * normal);
}

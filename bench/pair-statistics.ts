/**
 * The method of the suite (issue 4): baseline and protomesh run alternately, A B A B …, and every
 * figure is the median over pairs of protomesh / baseline, with the spread (min–max) of those
 * per-pair ratios. A ratio within one pair cancels the machine's drift (other tenants, thermal
 * state, page cache) that a ratio of two separate medians would keep.
 */

/** One baseline run and the protomesh run right after it. */
export interface Pair<T> {
  baseline: T;
  protomesh: T;
}

/** A metric summarised over pairs. */
export interface Comparison {
  /** Medians of the raw values. */
  baseline: number;
  protomesh: number;
  /** Median of the per-pair ratios protomesh / baseline. */
  ratio: number;
  /** Smallest and largest per-pair ratio. */
  spread: { min: number; max: number };
  samples: { baseline: number[]; protomesh: number[]; ratios: number[] };
}

/** A metric summarised as per-pair differences (protomesh − baseline), e.g. added µs. */
export interface Difference {
  median: number;
  spread: { min: number; max: number };
  samples: number[];
}

/**
 * Runs `count` pairs: the baseline, then protomesh, `count` times in turn. Runs are sequential, so
 * never two loads at once; `onPair` sees each pair as it completes (progress lines).
 */
export function runPairs<T>(
  count: number,
  runBaseline: (index: number) => Promise<T>,
  runProtomesh: (index: number) => Promise<T>,
  onPair: (pair: Pair<T>, index: number) => void = () => undefined,
): Promise<Pair<T>[]> {
  return runRounds(count, { baseline: runBaseline, protomesh: runProtomesh }, onPair);
}

/**
 * Runs `count` rounds of every side in `runs`, in the order of its keys, A B C A B C …: the
 * generalisation of {@link runPairs} to more than two sides (B1 and B5 run plain grpc-js, protomesh
 * and connect-node), so that each round's runs share the machine's drift. Runs are sequential;
 * `onRound` sees each round as it completes. {@link pairsOf} turns rounds into pairs to compare.
 */
export async function runRounds<K extends string, T>(
  count: number,
  runs: Readonly<Record<K, (index: number) => Promise<T>>>,
  onRound: (round: Record<K, T>, index: number) => void = () => undefined,
): Promise<Record<K, T>[]> {
  const rounds: Record<K, T>[] = [];
  for (let index = 0; index < count; index += 1) {
    const round = {} as Record<K, T>;
    for (const side of Object.keys(runs) as K[]) round[side] = await runs[side](index);
    rounds.push(round);
    onRound(round, index);
  }
  return rounds;
}

/** The pairs `baseline` / `subject` of each round, for {@link compare} and {@link difference}. */
export function pairsOf<K extends string, T>(rounds: readonly Record<K, T>[], baseline: K, subject: K): Pair<T>[] {
  return rounds.map((round) => ({ baseline: round[baseline], protomesh: round[subject] }));
}

/** The median of `values` (mean of the two middle ones for an even count); NaN when empty. */
export function median(values: readonly number[]): number {
  if (values.length === 0) return Number.NaN;
  const sorted = [...values].sort((a, b) => a - b);
  const middle = Math.floor(sorted.length / 2);
  return sorted.length % 2 === 1 ? sorted[middle] : (sorted[middle - 1] + sorted[middle]) / 2;
}

/** The value at `percentile` (0–100) of `values`, nearest rank; NaN when empty. */
export function percentileOf(values: readonly number[], percentile: number): number {
  if (values.length === 0) return Number.NaN;
  const sorted = [...values].sort((a, b) => a - b);
  const rank = Math.ceil((percentile / 100) * sorted.length);
  return sorted[Math.min(sorted.length - 1, Math.max(0, rank - 1))];
}

/** Summarises one metric of each pair as medians and the median of per-pair ratios. */
export function compare<T>(pairs: readonly Pair<T>[], metric: (run: T) => number): Comparison {
  const baseline = pairs.map((pair) => metric(pair.baseline));
  const protomesh = pairs.map((pair) => metric(pair.protomesh));
  const ratios = pairs.map((_, index) => protomesh[index] / baseline[index]);
  return {
    baseline: median(baseline),
    protomesh: median(protomesh),
    ratio: median(ratios),
    spread: { min: Math.min(...ratios), max: Math.max(...ratios) },
    samples: { baseline, protomesh, ratios },
  };
}

/** Summarises one metric of each pair as the median of per-pair differences protomesh − baseline. */
export function difference<T>(pairs: readonly Pair<T>[], metric: (run: T) => number): Difference {
  const samples = pairs.map((pair) => metric(pair.protomesh) - metric(pair.baseline));
  return { median: median(samples), spread: { min: Math.min(...samples), max: Math.max(...samples) }, samples };
}

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
export async function runPairs<T>(
  count: number,
  runBaseline: (index: number) => Promise<T>,
  runProtomesh: (index: number) => Promise<T>,
  onPair: (pair: Pair<T>, index: number) => void = () => undefined,
): Promise<Pair<T>[]> {
  const pairs: Pair<T>[] = [];
  for (let index = 0; index < count; index += 1) {
    const baseline = await runBaseline(index);
    const protomesh = await runProtomesh(index);
    pairs.push({ baseline, protomesh });
    onPair({ baseline, protomesh }, index);
  }
  return pairs;
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

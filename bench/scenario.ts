import { median } from "./pair-statistics";
import type { Comparison, Difference } from "./pair-statistics";

/**
 * What a benchmark scenario is: a name from issue 4 (B0–B8), and either a `run` that measures and
 * returns table rows, or the issue it still waits on. The harness (run.ts) picks scenarios by name.
 */

/** How much a run measures: `full` for figures, `smoke` to prove the harness works (make test). */
export type BenchMode = "full" | "smoke";

/** What every scenario receives from the harness. */
export interface BenchContext {
  mode: BenchMode;
  /** Baseline/protomesh pairs per figure (≥ 5 in full mode, as the issue requires). */
  pairs: number;
  /** Where server logs go: a directory for one file per process, or undefined for /dev/null. */
  logDir?: string;
  /**
   * Target and LB policy of the protomesh client. B2: the grpc-js policy of its service config
   * (unset: the server's address and createClient's default, pick_first). B3: the mesh config's
   * `lb_policy` (comma-separated for several; unset: every policy the mesh offers).
   */
  client: { target?: string; policy?: string };
  /** A progress line on stderr. */
  progress(line: string): void;
}

/** Which direction of a metric is better, to state goals and read ratios. */
export type Better = "higher" | "lower";

/** A goal from the issue, checked against a row. */
export interface Goal {
  /** As the issue states it, e.g. "≥ 0.90× plain grpc-js throughput". */
  text: string;
  /** Where the goal applies: the ratio column or the protomesh column. */
  on: "ratio" | "protomesh";
  /** The bound, and whether the value must stay at most or at least that. */
  bound: number;
  kind: "atLeast" | "atMost";
}

/** One line of the results table. */
export interface Row {
  scenario: string;
  metric: string;
  unit: string;
  better: Better;
  /** The baseline of this row ("plain grpc-js" unless stated). */
  baselineName: string;
  baseline: number | null;
  protomesh: number | null;
  ratio: number | null;
  spread: { min: number; max: number } | null;
  goal?: Goal & { isMet: boolean };
  samples?: unknown;
  /**
   * Set by {@link valueRow}: the columns are medians of measured values, the spread is the min–max
   * of the protomesh values in the row's unit, and there is no ratio.
   */
  isAbsolute?: boolean;
}

/** A scenario that is not built yet, and what it waits on. */
export interface PendingScenario {
  name: string;
  title: string;
  waitsOn: string;
}

/** A built scenario. */
export interface BuiltScenario {
  name: string;
  title: string;
  run(context: BenchContext): Promise<Row[]>;
}

/** Builds a table row from a comparison over pairs. */
export function comparisonRow(
  scenario: string,
  metric: string,
  unit: string,
  better: Better,
  comparison: Comparison,
  options: { baselineName?: string; goal?: Goal } = {},
): Row {
  const row: Row = {
    scenario,
    metric,
    unit,
    better,
    baselineName: options.baselineName ?? DEFAULT_BASELINE_NAME,
    baseline: comparison.baseline,
    protomesh: comparison.protomesh,
    ratio: comparison.ratio,
    spread: comparison.spread,
    samples: comparison.samples,
  };
  return withGoal(row, options.goal);
}

/** Builds a row whose protomesh column is a median difference (e.g. added µs) and has no ratio. */
export function differenceRow(
  scenario: string,
  metric: string,
  unit: string,
  difference: Difference,
  options: { baselineName?: string; goal?: Goal } = {},
): Row {
  const row: Row = {
    scenario,
    metric,
    unit,
    better: "lower",
    baselineName: options.baselineName ?? DEFAULT_BASELINE_NAME,
    baseline: null,
    protomesh: difference.median,
    ratio: null,
    spread: difference.spread,
    samples: difference.samples,
  };
  return withGoal(row, options.goal);
}

/**
 * Builds a row of measured values with no per-pair ratio, for figures where a ratio means nothing
 * (a baseline of zero failed calls) or there is no baseline (B7): the medians of `protomesh` and of
 * `baseline` (when there is one), and the min–max of `protomesh` as the spread.
 */
export function valueRow(
  scenario: string,
  metric: string,
  unit: string,
  better: Better,
  values: { protomesh: readonly number[]; baseline?: readonly number[] },
  options: { baselineName?: string; goal?: Goal } = {},
): Row {
  const row: Row = {
    scenario,
    metric,
    unit,
    better,
    baselineName: options.baselineName ?? DEFAULT_BASELINE_NAME,
    baseline: values.baseline ? median(values.baseline) : null,
    protomesh: median(values.protomesh),
    ratio: null,
    spread: { min: Math.min(...values.protomesh), max: Math.max(...values.protomesh) },
    samples: values,
    isAbsolute: true,
  };
  return withGoal(row, options.goal);
}

/**
 * Prefix of the metric of rows whose protomesh column holds the TypeScript peer,
 * @connectrpc/connect-node's gRPC server, against plain grpc-js (B1, B5, B11).
 */
export const CONNECT_VS_PLAIN = "connect-node vs plain grpc-js";

/** What the baseline column measures unless a scenario names it. */
const DEFAULT_BASELINE_NAME = "plain grpc-js";

/** The row with its goal, checked against the row's figures, when it has one. */
function withGoal(row: Row, goal: Goal | undefined): Row {
  return goal ? { ...row, goal: checkGoal(goal, row) } : row;
}

function checkGoal(goal: Goal, row: Row): Goal & { isMet: boolean } {
  const value = goal.on === "ratio" ? row.ratio : row.protomesh;
  const isMet = value !== null && (goal.kind === "atLeast" ? value >= goal.bound : value <= goal.bound);
  return { ...goal, isMet };
}

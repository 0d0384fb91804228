import { execFileSync } from "node:child_process";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { sampleIdleMachine } from "./core-usage";
import { LOAD_CORE, SERVER_CORE, isPinningAvailable } from "./pinned-process";
import type { BenchMode, Goal, Row } from "./scenario";

/** How one scenario ended in a run of the suite. */
export type ScenarioOutcome =
  | { name: string; title: string; status: "measured"; durationS: number; rows: Row[] }
  | { name: string; title: string; status: "failed"; durationS: number; error: string }
  | { name: string; title: string; status: "not yet built"; waitsOn: string }
  | { name: string; title: string; status: "collected"; collectedBy: readonly string[] };

/** The machine a run happened on, as BENCHMARKS.md states it. */
export interface Machine {
  nproc: number;
  cpuModel: string;
  node: string;
  kernel: string;
  isPinned: boolean;
  serverCore: number;
  loadCore: number;
  h2load: string;
  /** Busy share (0–1) of each core over one second before the run, with nothing of ours running. */
  coresBusyBeforeRun: number[];
}

/** Everything a run writes to bench/results/*.json. */
export interface BenchReport {
  mode: BenchMode;
  pairs: number;
  startedAt: string;
  durationS: number;
  machine: Machine;
  client: { target?: string; policy?: string };
  scenarios: ScenarioOutcome[];
}

/**
 * Describes this machine: cores, CPU model (/proc/cpuinfo), Node, kernel, pinning, h2load version,
 * and how busy its cores are with nothing of ours running.
 */
export async function describeMachine(): Promise<Machine> {
  let cpuModel = os.cpus()[0]?.model ?? "unknown";
  try {
    cpuModel = /^model name\s*:\s*(.+)$/m.exec(fs.readFileSync("/proc/cpuinfo", "utf8"))?.[1] ?? cpuModel;
  } catch {
    // not Linux: keep os.cpus()'s model
  }
  let h2load = "not installed";
  try {
    h2load = execFileSync("h2load", ["--version"], { encoding: "utf8" }).trim();
  } catch {
    // reported as not installed
  }
  return {
    nproc: os.availableParallelism(),
    cpuModel,
    node: process.version,
    kernel: `${os.type()} ${os.release()}`,
    isPinned: isPinningAvailable(),
    serverCore: SERVER_CORE,
    loadCore: LOAD_CORE,
    h2load,
    coresBusyBeforeRun: await sampleIdleMachine(),
  };
}

/** Writes the report as `<mode>-<timestamp>.json` and `<mode>-latest.json` under `dir`; returns the first. */
export function writeReport(dir: string, report: BenchReport): string {
  fs.mkdirSync(dir, { recursive: true });
  const stamp = report.startedAt.replace(/[:.]/g, "-");
  const file = path.join(dir, `${report.mode}-${stamp}.json`);
  const text = `${JSON.stringify(report, null, 2)}\n`;
  fs.writeFileSync(file, text);
  fs.writeFileSync(path.join(dir, `${report.mode}-latest.json`), text);
  return file;
}

/** The results as one Markdown table: scenario, metric, baseline, protomesh, ratio, spread, goal. */
export function formatTable(scenarios: readonly ScenarioOutcome[]): string {
  const lines = [
    "| scenario | metric | baseline | protomesh | ratio | spread (min–max) | goal |",
    "| --- | --- | ---: | ---: | ---: | ---: | --- |",
  ];
  for (const scenario of scenarios) {
    if (scenario.status === "measured") {
      for (const row of scenario.rows) lines.push(formatRow(row));
    } else if (scenario.status === "failed") {
      lines.push(`| ${scenario.name} | failed: ${scenario.error.split("\n")[0]} | | | | | |`);
    } else if (scenario.status === "not yet built") {
      const status = `not yet built: waits on ${scenario.waitsOn}`;
      lines.push(`| ${scenario.name} | ${scenario.title} | — | — | — | — | ${status} |`);
    }
  }
  return lines.join("\n");
}

function formatRow(row: Row): string {
  const metric = row.baselineName === "plain grpc-js" ? row.metric : `${row.metric} (baseline: ${row.baselineName})`;
  const unit = ` ${row.unit}`;
  if (row.isAbsolute) {
    const value = (number: number | null) => (number === null ? "—" : `${figure(number)}${unit}`);
    const spread = row.spread ? `${figure(row.spread.min)}–${figure(row.spread.max)}${unit}` : "";
    return `| ${row.scenario} | ${metric} | ${value(row.baseline)} | ${value(row.protomesh)} | — | ${spread} | ${goalText(row)} |`;
  }
  if (row.ratio === null) {
    const spread = row.spread ? `${signed(row.spread.min)} … ${signed(row.spread.max)}${unit}` : "";
    const added = row.protomesh === null ? "" : `${signed(row.protomesh)}${unit}`;
    return `| ${row.scenario} | ${metric} | — | ${added} | — | ${spread} | ${goalText(row)} |`;
  }
  const value = (number: number | null) => (number === null ? "—" : `${figure(number)}${unit}`);
  const spread = row.spread ? `${row.spread.min.toFixed(2)}–${row.spread.max.toFixed(2)}×` : "";
  const ratio = `${row.ratio.toFixed(2)}×`;
  return `| ${row.scenario} | ${metric} | ${value(row.baseline)} | ${value(row.protomesh)} | ${ratio} | ${spread} | ${goalText(row)} |`;
}

/** "met" or "missed by …" for a row with a goal; empty otherwise. */
export function goalText(row: Row): string {
  const goal = row.goal;
  if (!goal) return "";
  const value = goal.on === "ratio" ? row.ratio : row.protomesh;
  if (value === null) return `${goal.text}: no figure`;
  const verdict = goal.isMet ? `${goal.text}: met` : `${goal.text}: missed by ${shortfall(goal, value)}`;
  // With a noisy machine a median can land on either side of a bound: say when the pairs disagree.
  const isStraddled = row.spread !== null && row.spread.min < goal.bound && goal.bound < row.spread.max;
  return isStraddled ? `${verdict} (median; the spread straddles the goal)` : verdict;
}

function shortfall(goal: Goal, value: number): string {
  const gap = Math.abs(value - goal.bound);
  if (goal.on === "ratio") return `${gap.toFixed(2)}× (${((gap / goal.bound) * 100).toFixed(0)} % of the goal)`;
  const unit = ["µs", "ms", "s", "calls"].find((candidate) => goal.text.includes(` ${candidate}`)) ?? "";
  return `${figure(gap)} ${unit}`.trim();
}

/** A number with as many decimals as its size deserves. */
export function figure(value: number): string {
  if (!Number.isFinite(value)) return String(value);
  const magnitude = Math.abs(value);
  if (magnitude >= 100) return value.toFixed(0);
  if (magnitude >= 10) return value.toFixed(1);
  return value.toFixed(2);
}

function signed(value: number): string {
  return `${value >= 0 ? "+" : ""}${figure(value)}`;
}

import * as fs from "node:fs";

/**
 * How busy each core of the machine is, whoever runs on it, from /proc/stat. Small shared machines
 * run other tenants' work that `ps` may not show (other containers); the harness records how busy
 * the cores were before the run and during each h2load run, so noisy figures can be told apart.
 */

/** Cumulative busy and total ticks of each core, by core number. */
export type CoreTimes = Map<number, { busy: number; total: number }>;

/** Reads /proc/stat; an empty map where there is none (not Linux). */
export function readCoreTimes(): CoreTimes {
  const times: CoreTimes = new Map();
  let text: string;
  try {
    text = fs.readFileSync("/proc/stat", "utf8");
  } catch {
    return times;
  }
  for (const line of text.split("\n")) {
    const match = /^cpu(\d+)\s+(.+)$/.exec(line);
    if (!match) continue;
    // user nice system idle iowait irq softirq steal …: idle and iowait are the idle ticks.
    const ticks = match[2].trim().split(/\s+/).map(Number);
    const total = ticks.slice(0, 8).reduce((sum, tick) => sum + tick, 0);
    times.set(Number(match[1]), { busy: total - ticks[3] - ticks[4], total });
  }
  return times;
}

/** Share (0–1) of `core`'s time that was busy between two readings; NaN when unknown. */
export function busyShare(before: CoreTimes, after: CoreTimes, core: number): number {
  const start = before.get(core);
  const end = after.get(core);
  if (!start || !end || end.total === start.total) return Number.NaN;
  return (end.busy - start.busy) / (end.total - start.total);
}

/** Samples every core for `ms` while the harness waits: how busy the machine is without us. */
export async function sampleIdleMachine(ms = 1_000): Promise<number[]> {
  const before = readCoreTimes();
  await new Promise((resolve) => setTimeout(resolve, ms));
  const after = readCoreTimes();
  return [...after.keys()].sort((a, b) => a - b).map((core) => busyShare(before, after, core));
}

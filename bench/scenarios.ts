import { B0 } from "./scenario-b0-raw-http2";
import { B1 } from "./scenario-b1-server-overhead";
import { B2 } from "./scenario-b2-client-overhead";
import { B3 } from "./scenario-b3-slow-replica";
import { B4 } from "./scenario-b4-failover";
import { B5 } from "./scenario-b5-streaming";
import { B6 } from "./scenario-b6-memory";
import { B7 } from "./scenario-b7-reaction";
import { B11 } from "./scenario-b11-grpc-bench";
import { B1T } from "./scenario-b1t-server-mtls";
import { B2T } from "./scenario-b2t-client-mtls";
import type { BuiltScenario, PendingScenario } from "./scenario";

/**
 * Every scenario of issues 4 and 11 by name, in the order the suite runs them. Built ones measure; pending
 * ones are listed in the table with what they wait on, so they slot in as their parts land.
 */

/** Scenarios that run today. */
export const BUILT_SCENARIOS: readonly BuiltScenario[] = [B0, B1, B2, B3, B4, B5, B6, B7, B11];

/**
 * Built scenarios that run only when named (`run.js B1T B2T`): B1 and B2 under mTLS (issue 13).
 * Four sides in each round instead of two, they would add some 6 minutes to the default suite.
 */
export const ON_REQUEST_SCENARIOS: readonly BuiltScenario[] = [B1T, B2T];

/** Scenarios not built yet, with what they wait on (none today: the control plane landed). */
export const PENDING_SCENARIOS: readonly PendingScenario[] = [];

/** Scenarios whose rows other scenarios produce: B8 is measured by the processes of B1–B4. */
export const COLLECTED_SCENARIOS: Readonly<Record<string, { title: string; collectedBy: readonly string[] }>> = {
  B8: {
    title: "event-loop delay p99 of every Node process (rows from B1, B2, B3, B4)",
    collectedBy: ["B1", "B2", "B3", "B4"],
  },
};

/** Every scenario name, in order. */
export const SCENARIO_NAMES: readonly string[] = [
  ...[...BUILT_SCENARIOS, ...ON_REQUEST_SCENARIOS, ...PENDING_SCENARIOS].map((scenario) => scenario.name),
  ...Object.keys(COLLECTED_SCENARIOS),
].sort(byScenarioNumber);

/** The names run when none is given: all but the on-request ones. */
const DEFAULT_NAMES = SCENARIO_NAMES.filter((name) => !ON_REQUEST_SCENARIOS.some((scenario) => scenario.name === name));

/** Orders scenario names by number: B2 before B11. */
export function byScenarioNumber(a: string, b: string): number {
  return a.localeCompare(b, "en", { numeric: true });
}

/**
 * Resolves scenario names (all but the on-request ones when none is given; B8 brings in the
 * scenarios that collect it) into the built ones to run and the pending ones to list. Throws on an
 * unknown name, listing the known.
 */
export function selectScenarios(names: readonly string[]): { built: BuiltScenario[]; pending: PendingScenario[] } {
  const wanted = new Set(names.length === 0 ? DEFAULT_NAMES : names.map((name) => name.toUpperCase()));
  for (const name of wanted) {
    if (!SCENARIO_NAMES.includes(name)) {
      throw new Error(`bench: unknown scenario ${name}; known: ${SCENARIO_NAMES.join(", ")}`);
    }
    for (const collector of COLLECTED_SCENARIOS[name]?.collectedBy ?? []) wanted.add(collector);
  }
  return {
    built: [...BUILT_SCENARIOS, ...ON_REQUEST_SCENARIOS].filter((scenario) => wanted.has(scenario.name)),
    pending: PENDING_SCENARIOS.filter((scenario) => wanted.has(scenario.name)),
  };
}

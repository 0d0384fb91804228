import { registeredBalancerPolicies } from "../mesh/balancer";
import { register } from "../mesh/register";
import { BENCH_SERVICE, BenchControlPlane, MeshProcesses, OpenLoopClient, ReplicaHost } from "./bench-mesh";
import { epochMs, issuedBetween, latencyPercentile, shareOf } from "./call-record";
import { compare } from "./pair-statistics";
import { microsecondsPerPick } from "./picker-cost";
import type { Pair } from "./pair-statistics";
import { sleep } from "./poll";
import { comparisonRow } from "./scenario";
import type { BenchContext, BuiltScenario, Goal, Row } from "./scenario";

/** The replicas of B3, in one replica host process; r4 is slowed mid-run. */
const IDS = ["r0", "r1", "r2", "r3", "r4"] as const;
const SLOW = "r4";
/** Median latency of every replica, and of the slow one once raised (issue 4). */
const MEDIAN_MS = 20;
const SLOW_MEDIAN_MS = 1_000;
/** The baseline policy: what every other policy's figures are divided by. */
const BASELINE_POLICY = "round_robin";

/** The latency-aware policy the goals are set for (issue 8), and its goals. */
const GOAL_POLICY = "p2c_ewma";
const P99_GOAL: Goal = { text: "p99 of p2c_ewma ≤ 0.1 × p99 of round_robin", on: "ratio", bound: 0.1, kind: "atMost" };
const OK_GOAL: Goal = { text: "≥ 99.9 % of calls OK within the deadline", on: "protomesh", bound: 99.9, kind: "atLeast" };
const SHARE_GOAL: Goal = { text: "slow replica's share ≤ 2 %", on: "protomesh", bound: 2, kind: "atMost" };
/** Policies that do not spread calls over replicas, left out unless named: pick_first uses one replica. */
const NOT_SPREADING = new Set(["pick_first"]);

interface Timing {
  rateRps: number;
  /** Deadline of every call: in full mode 50× the median, and about half the slow replica's calls miss it. */
  deadlineMs: number;
  /** Measured time before the slow-down, then after it. */
  normalMs: number;
  slowMs: number;
}

function timing(context: BenchContext): Timing {
  return context.mode === "full"
    ? { rateRps: 200, deadlineMs: 1_000, normalMs: 3_000, slowMs: 6_000 }
    : { rateRps: 100, deadlineMs: 300, normalMs: 300, slowMs: 600 };
}

/** What one run of one policy measured. */
interface PolicyRun {
  calls: number;
  p50Ms: number;
  p99Ms: number;
  p999Ms: number;
  /** Percent of calls OK (within their deadline). */
  okPercent: number;
  /** Percent of the calls issued after the slow-down that the slow replica received. */
  slowSharePercent: number;
  clientDelayP99Ms: number;
  replicasDelayP99Ms: number;
}

/**
 * The policies to compare with round_robin: `--policy` (comma-separated), else every policy the
 * mesh offers (the registry of mesh/balancer.ts, so a new one slots in by name) but those that do
 * not spread calls (pick_first: its one replica is the slow one or not, by chance). With only
 * round_robin, it is compared with itself (a second run: the noise between two runs).
 */
export function policiesToCompare(option: string | undefined): string[] {
  register();
  const offered = registeredBalancerPolicies();
  const named = option ? option.split(",").map((name) => name.trim()) : offered.filter((name) => !NOT_SPREADING.has(name));
  for (const name of named) {
    if (!offered.includes(name)) throw new Error(`B3: --policy ${name}: must be one of ${offered.join(", ")}`);
  }
  const others = named.filter((name) => name !== BASELINE_POLICY);
  return others.length > 0 ? others : [BASELINE_POLICY];
}

/**
 * B3: one slow replica of 5. A control plane and one process hosting replicas r0–r4 (each a
 * protomesh server registered with it, 20 ms median latency, seeded log-normal); for each policy
 * in turn (round_robin first, then the others, repeated `pairs` times) the control plane's config
 * is set to it and a fresh mesh client (xds:///) calls GetProduct at a fixed rate with a 1 s
 * deadline; r4's median is raised to 1 s a third of the way into the measured window. Figures over
 * the whole window: p50/p99/p99.9 (failed calls at the time their status came), calls OK within the
 * deadline, and the slow replica's share of the calls issued after the slow-down; each policy's
 * figure over round_robin's in the same repetition.
 */
export const B3: BuiltScenario = {
  name: "B3",
  title: "one slow replica of 5: p50/p99/p99.9, success within deadline, slow replica's share, per LB policy",
  run: async (context) => {
    const policies = policiesToCompare(context.client.policy);
    const phases = timing(context);
    const processes = new MeshProcesses();
    try {
      const controlPlane = processes.add(await BenchControlPlane.start(context, { policy: BASELINE_POLICY, leaseTtlMs: 0 }));
      const host = processes.add(
        await ReplicaHost.start(context, {
          ids: IDS,
          controlPlane: controlPlane.address,
          register: "auto",
          medianMs: MEDIAN_MS,
          seed: 3,
        }),
      );
      await controlPlane.waitHealthy(IDS.length, 10_000);

      const runPolicy = async (policy: string, seed: number): Promise<PolicyRun> => {
        await controlPlane.setPolicy(policy);
        await host.setMedian(SLOW, MEDIAN_MS);
        const client = processes.add(
          await OpenLoopClient.start(context, { kind: "mesh", target: BENCH_SERVICE, controlPlane: controlPlane.address }),
        );
        const totalMs = phases.normalMs + phases.slowMs + 20_000;
        const began = await client.begin({
          rateRps: phases.rateRps,
          deadlineMs: phases.deadlineMs,
          maxDurationMs: totalMs,
          maxCalls: Math.ceil((phases.rateRps * totalMs) / 1000),
          seed,
          replicas: host.addresses,
        });
        // A policy that spreads calls reaches every replica; pick_first reaches one.
        await client.waitServedBy(NOT_SPREADING.has(policy) ? [] : IDS, began, 10_000);
        await processes.mark([client, host]);
        const from = epochMs();
        await sleep(phases.normalMs);
        const slowedAt = await host.setMedian(SLOW, SLOW_MEDIAN_MS);
        await sleep(phases.slowMs);
        const to = epochMs();
        const [clientSample, hostSample] = await processes.sample([client, host]);
        const records = issuedBetween(await client.end(), from, to);
        await processes.stop(client);
        const run: PolicyRun = {
          calls: records.length,
          p50Ms: latencyPercentile(records, 50),
          p99Ms: latencyPercentile(records, 99),
          p999Ms: latencyPercentile(records, 99.9),
          okPercent: 100 * shareOf(records, (record) => record.code === 0),
          slowSharePercent: 100 * shareOf(issuedBetween(records, slowedAt), (record) => record.replica === SLOW),
          clientDelayP99Ms: clientSample.eventLoopDelayP99Ms,
          replicasDelayP99Ms: hostSample.eventLoopDelayP99Ms,
        };
        context.progress(`B3 ${policy}: ${describe(run)}`);
        return run;
      };

      const pairs = new Map<string, Pair<PolicyRun>[]>(policies.map((policy) => [policy, []]));
      for (let repetition = 0; repetition < context.pairs; repetition += 1) {
        const baseline = await runPolicy(BASELINE_POLICY, repetition * 100);
        for (const [index, policy] of policies.entries()) {
          pairs.get(policy)!.push({ baseline, protomesh: await runPolicy(policy, repetition * 100 + index + 1) });
        }
      }
      return [...rows(pairs, phases), ...pickerRows(policies, context)];
    } finally {
      await processes.stopAll();
    }
  },
};

function rows(pairsByPolicy: Map<string, Pair<PolicyRun>[]>, phases: Timing): Row[] {
  const goalOf = (policy: string, goal: Goal) => (policy === GOAL_POLICY ? { goal } : {});
  const load = `${phases.rateRps} calls/s, deadline ${phases.deadlineMs / 1000} s`;
  return [...pairsByPolicy.entries()].flatMap(([policy, pairs]) => {
    const options = { baselineName: BASELINE_POLICY };
    const metric = (what: string) => `${policy}: ${what}`;
    return [
      comparisonRow("B3", metric(`latency p50 (${load})`), "ms", "lower", compare(pairs, (run) => run.p50Ms), options),
      comparisonRow("B3", metric("latency p99"), "ms", "lower", compare(pairs, (run) => run.p99Ms), {
        ...options,
        ...goalOf(policy, P99_GOAL),
      }),
      comparisonRow("B3", metric("latency p99.9"), "ms", "lower", compare(pairs, (run) => run.p999Ms), options),
      comparisonRow("B3", metric("calls OK within the deadline"), "%", "higher", compare(pairs, (run) => run.okPercent), {
        ...options,
        ...goalOf(policy, OK_GOAL),
      }),
      comparisonRow("B3", metric("slow replica's share of calls after the slow-down (1/5 = 20 %)"), "%", "lower",
        compare(pairs, (run) => run.slowSharePercent), { ...options, ...goalOf(policy, SHARE_GOAL) }),
      comparisonRow("B8", metric("client event-loop delay p99 (B3)"), "ms", "lower", compare(pairs, (run) => run.clientDelayP99Ms),
        options),
      comparisonRow("B8", metric("replica host event-loop delay p99 (B3)"), "ms", "lower",
        compare(pairs, (run) => run.replicasDelayP99Ms), options),
    ];
  });
}

/** Policies whose picker the microbenchmark cannot drive alone: ring_hash hashes what an xDS route says. */
const NO_PICKER_BENCH = new Set(["ring_hash"]);

/**
 * The per-pick cost of each policy beside round_robin's (bench/picker-cost.ts), alternating
 * round_robin and the policy `pairs` times in this process: the real pickers over 5 stand-in
 * READY endpoints, each pick's call started and ended.
 */
function pickerRows(policies: readonly string[], context: BenchContext): Row[] {
  const picks = context.mode === "full" ? 1_000_000 : 50_000;
  return policies
    .filter((policy) => !NO_PICKER_BENCH.has(policy))
    .map((policy) => {
      const pairs: Pair<number>[] = [];
      for (let repetition = 0; repetition < context.pairs; repetition += 1) {
        pairs.push({ baseline: microsecondsPerPick(BASELINE_POLICY, picks), protomesh: microsecondsPerPick(policy, picks) });
      }
      context.progress(`B3 picker ${policy}: ${pairs.map((pair) => pair.protomesh.toFixed(3)).join(", ")} µs per pick (round_robin ${pairs.map((pair) => pair.baseline.toFixed(3)).join(", ")})`);
      return comparisonRow("B3", `${policy}: per-pick cost (picker microbenchmark, 5 endpoints)`, "µs", "lower", compare(pairs, (value) => value), {
        baselineName: BASELINE_POLICY,
      });
    });
}

function describe(run: PolicyRun): string {
  return (
    `${run.calls} calls, p50 ${run.p50Ms.toFixed(1)} ms, p99 ${run.p99Ms.toFixed(0)} ms, p99.9 ${run.p999Ms.toFixed(0)} ms, ` +
    `${run.okPercent.toFixed(1)} % OK, slow replica got ${run.slowSharePercent.toFixed(1)} %`
  );
}

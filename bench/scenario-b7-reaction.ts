import { BENCH_SERVICE, BenchControlPlane, MeshProcesses, OpenLoopClient, ReplicaHost } from "./bench-mesh";
import { firstCallTo, lastCallTo } from "./call-record";
import type { CallRecord } from "./call-record";
import { median } from "./pair-statistics";
import { sleep } from "./poll";
import { valueRow } from "./scenario";
import type { BuiltScenario, Row } from "./scenario";

/** The endpoint changes B7 times, in the order each repetition makes them to replica r2. */
const CHANGES = [
  { kind: "register", isJoin: true, metric: "a new replica registers → its first call" },
  { kind: "notServing", isJoin: false, metric: "a replica reports NOT_SERVING → the last call it gets" },
  { kind: "serving", isJoin: true, metric: "it reports SERVING again → its first call" },
  { kind: "deregister", isJoin: false, metric: "a replica deregisters → the last call it gets" },
] as const;
type ChangeKind = (typeof CHANGES)[number]["kind"];

/** Where B7's goal (issue 4) applies: every change, from the change to traffic following it. */
const REACTION_GOAL = { text: "≤ 100 ms", on: "protomesh", bound: 100, kind: "atMost" } as const;

/** Open-loop rate: each of 3 replicas gets a call every ~6 ms, the resolution of the figures. */
const FULL_RATE_RPS = 500;
const SMOKE_RATE_RPS = 300;

interface Change {
  kind: ChangeKind;
  at: number;
}

/**
 * B7: control-plane reaction. A control plane, one process hosting replicas r0–r2 that register
 * when told (the real RegistryLease), and a mesh client (xds:///) calling at a fixed rate. r0 and
 * r1 are registered; each repetition then registers r2, sets it NOT_SERVING, SERVING, and
 * deregisters it, a settle period apart. The change is timestamped in the replica process (the
 * Register / Deregister call sent, the health status set), every call in the client (when issued,
 * and which replica answered); the reaction is the first call issued to r2 after a join, and the
 * last one issued to it after a leave (0 when none), censored at the settle period.
 */
export const B7: BuiltScenario = {
  name: "B7",
  title: "control-plane reaction: endpoint change to traffic following it",
  run: async (context) => {
    const isFull = context.mode === "full";
    const settleMs = isFull ? 1_500 : 300;
    const rateRps = isFull ? FULL_RATE_RPS : SMOKE_RATE_RPS;
    const repetitions = context.pairs;
    const processes = new MeshProcesses();
    try {
      const controlPlane = processes.add(await BenchControlPlane.start(context, { policy: "round_robin", leaseTtlMs: 0 }));
      const host = processes.add(
        await ReplicaHost.start(context, {
          ids: ["r0", "r1", "r2"],
          controlPlane: controlPlane.address,
          register: "manual",
          medianMs: 0,
          seed: 7,
        }),
      );
      await host.register("r0");
      await host.register("r1");
      await controlPlane.waitHealthy(2, 5_000);
      const client = processes.add(
        await OpenLoopClient.start(context, { kind: "mesh", target: BENCH_SERVICE, controlPlane: controlPlane.address }),
      );
      const durationMs = repetitions * CHANGES.length * settleMs + 20_000;
      const began = await client.begin({
        rateRps,
        deadlineMs: 1_000,
        maxDurationMs: durationMs,
        maxCalls: Math.ceil((rateRps * durationMs) / 1000),
        seed: 7,
        replicas: host.addresses,
      });
      await client.waitServedBy(["r0", "r1"], began, 10_000);
      const changes: Change[] = [];
      const make: Record<ChangeKind, () => Promise<number>> = {
        register: () => host.register("r2"),
        notServing: () => host.setServing("r2", false),
        serving: () => host.setServing("r2", true),
        deregister: () => host.deregister("r2"),
      };
      for (let repetition = 0; repetition < repetitions; repetition += 1) {
        for (const { kind } of CHANGES) {
          changes.push({ kind, at: await make[kind]() });
          await sleep(settleMs);
        }
      }
      const records = await client.end();
      const rows: Row[] = CHANGES.map(({ kind, isJoin, metric }) => {
        const reactions = changes.flatMap((change, index) =>
          change.kind === kind ? [reactionMs(records, change, changes[index + 1]?.at ?? Infinity, isJoin, settleMs)] : [],
        );
        context.progress(`B7 ${kind}: ${reactions.map((ms) => ms.toFixed(1)).join(", ")} ms (median ${median(reactions).toFixed(1)})`);
        return valueRow("B7", `${metric} (${rateRps} calls/s, ${repetitions}×)`, "ms", "lower", { protomesh: reactions }, {
          goal: REACTION_GOAL,
        });
      });
      return rows;
    } finally {
      await processes.stopAll();
    }
  },
};

/**
 * Milliseconds from `change` to traffic following it: for a join the first call to r2 issued
 * after it (censored at `settleMs` when none came before the next change); for a leave the last
 * call to r2 issued after it, 0 when none was.
 */
function reactionMs(records: readonly CallRecord[], change: Change, nextAt: number, isJoin: boolean, settleMs: number): number {
  if (isJoin) {
    const first = firstCallTo(records, "r2", change.at);
    return first && first.t < nextAt ? first.t - change.at : settleMs;
  }
  const last = lastCallTo(records, "r2", change.at, nextAt);
  return last ? last.t - change.at : 0;
}

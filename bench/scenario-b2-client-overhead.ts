import { BenchClient } from "./bench-client";
import { withServers } from "./bench-server";
import type { ClientLoad, ClientResult } from "./client-process";
import { compare, difference, runPairs } from "./pair-statistics";
import type { Pair } from "./pair-statistics";
import { comparisonRow, differenceRow } from "./scenario";
import type { BenchContext, BuiltScenario, Row } from "./scenario";
import { verifyUnary } from "./unary-load";

/** Concurrency of the latency runs (added µs per call) and of the throughput runs (issue 4). */
export const LATENCY_CONCURRENCY = 1;
export const THROUGHPUT_CONCURRENCY = 100;

/** How long each client runs at THROUGHPUT_CONCURRENCY before the first pair (full mode). */
const CLIENT_WARM_UP_MS = 4_000;

/** B2's closed loop at `concurrency`: 2.5 s after a 0.5 s warm-up in full mode, 300 calls in smoke (B2T too). */
export function clientLoad(context: BenchContext, concurrency: number): ClientLoad {
  return context.mode === "full"
    ? { concurrency, warmUpMs: 500, durationMs: 2_500, maxCalls: 1_000_000 }
    : { concurrency, warmUpMs: 100, durationMs: 2_000, maxCalls: 300 };
}

/**
 * B2: what the protomesh client costs over a plain grpc-js client, both Node processes on the load
 * core calling the same plain grpc-js server on the server core. The protomesh client is
 * createClient with its deadline and log interceptors, and the target and LB policy of
 * context.client (today the server's plain address and createClient's default policy, pick_first;
 * a service name through the control plane once a scenario starts one, as B3 will). The client
 * processes live through all pairs. At concurrency 1: added µs per call at p50/p99; at 100:
 * calls/s and CPU per call.
 */
export const B2: BuiltScenario = {
  name: "B2",
  title: "client overhead: protomesh client vs plain grpc-js client",
  run: (context) =>
    withServers(["plain"], context, async ({ plain }) => {
      await verifyUnary(plain, context.mode);
      const clients: BenchClient[] = [];
      try {
        const baseline = await BenchClient.start("plain", plain.address, undefined, context);
        clients.push(baseline);
        const target = context.client.target ?? plain.address;
        const protomesh = await BenchClient.start("mesh", target, context.client.policy, context);
        clients.push(protomesh);
        const withMetrics = await BenchClient.start("metrics", target, context.client.policy, context);
        clients.push(withMetrics);
        if (context.mode === "full") {
          // Let both clients' JIT settle before the first pair, or the first pairs drift (the baseline runs first).
          const warmUpLoad: ClientLoad = {
            ...clientLoad(context, THROUGHPUT_CONCURRENCY),
            warmUpMs: 0,
            durationMs: CLIENT_WARM_UP_MS,
          };
          for (const client of [baseline, protomesh, withMetrics]) await client.run(warmUpLoad);
        }

        const measure = async (concurrency: number): Promise<Pair<ClientResult>[]> => {
          const load = clientLoad(context, concurrency);
          return runPairs(context.pairs, () => baseline.run(load), () => protomesh.run(load), (pair, index) =>
            context.progress(
              `B2 c=${concurrency} pair ${index + 1}/${context.pairs}: plain ${describeClientRun(pair.baseline)}, ` +
                `protomesh ${describeClientRun(pair.protomesh)}`,
            ),
          );
        };
        const single = await measure(LATENCY_CONCURRENCY);
        const many = await measure(THROUGHPUT_CONCURRENCY);
        // What the client's Prometheus metrics cost (issue 14): protomesh with them against protomesh without.
        const measureMetrics = async (concurrency: number): Promise<Pair<ClientResult>[]> => {
          const load = clientLoad(context, concurrency);
          return runPairs(context.pairs, () => protomesh.run(load), () => withMetrics.run(load), (pair, index) =>
            context.progress(
              `B2 metrics c=${concurrency} pair ${index + 1}/${context.pairs}: protomesh ${describeClientRun(pair.baseline)}, ` +
                `with metrics ${describeClientRun(pair.protomesh)}`,
            ),
          );
        };
        const singleMetrics = await measureMetrics(LATENCY_CONCURRENCY);
        const manyMetrics = await measureMetrics(THROUGHPUT_CONCURRENCY);
        const metricsOptions = { baselineName: "protomesh, metrics off" };
        const withVsWithout = "protomesh with metrics vs without";
        const c1 = `c=${LATENCY_CONCURRENCY}`;
        const c100 = `c=${THROUGHPUT_CONCURRENCY}`;
        const cpuPer1000 = (run: ClientResult) => (run.process.cpuMs / run.calls) * 1000;
        const delay = (run: ClientResult) => run.process.eventLoopDelayP99Ms;
        const rows: Row[] = [
          comparisonRow("B2", `call latency p50 at ${c1}`, "µs", "lower", compare(single, (run) => run.p50Us), {
            goal: { text: "≤ 1.10× plain grpc-js p50", on: "ratio", bound: 1.1, kind: "atMost" },
          }),
          comparisonRow("B2", `call latency p99 at ${c1}`, "µs", "lower", compare(single, (run) => run.p99Us)),
          differenceRow("B2", `added latency p50 at ${c1}`, "µs", difference(single, (run) => run.p50Us)),
          differenceRow("B2", `added latency p99 at ${c1}`, "µs", difference(single, (run) => run.p99Us)),
          comparisonRow("B2", `throughput at ${c100}`, "calls/s", "higher", compare(many, (run) => run.callsPerSecond), {
            goal: { text: "≥ 0.95× plain grpc-js throughput", on: "ratio", bound: 0.95, kind: "atLeast" },
          }),
          comparisonRow("B2", `client CPU per 1000 calls at ${c100}`, "ms", "lower", compare(many, cpuPer1000)),
          comparisonRow("B2", `${withVsWithout}: call latency p50 at ${c1}`, "µs", "lower", compare(singleMetrics, (run) => run.p50Us), metricsOptions),
          comparisonRow("B2", `${withVsWithout}: call latency p99 at ${c1}`, "µs", "lower", compare(singleMetrics, (run) => run.p99Us), metricsOptions),
          comparisonRow("B2", `${withVsWithout}: throughput at ${c100}`, "calls/s", "higher", compare(manyMetrics, (run) => run.callsPerSecond), metricsOptions),
          comparisonRow("B2", `${withVsWithout}: client CPU per 1000 calls at ${c100}`, "ms", "lower", compare(manyMetrics, cpuPer1000), metricsOptions),
          comparisonRow("B8", `client event-loop delay p99 at ${c1} (B2)`, "ms", "lower", compare(single, delay)),
          comparisonRow("B8", `client event-loop delay p99 at ${c100} (B2)`, "ms", "lower", compare(many, delay)),
        ];
        return rows;
      } finally {
        await Promise.all(clients.map((client) => client.stop()));
      }
    }),
};

/** One client run in a progress line: calls/s, p50 and p99. */
export function describeClientRun(run: ClientResult): string {
  return `${run.callsPerSecond.toFixed(0)} calls/s p50 ${run.p50Us.toFixed(0)} µs p99 ${run.p99Us.toFixed(0)} µs`;
}

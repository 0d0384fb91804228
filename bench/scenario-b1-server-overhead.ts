import { eachServer, withServers } from "./bench-server";
import type { BenchServer } from "./bench-server";
import { compare, difference, pairsOf, runRounds } from "./pair-statistics";
import type { Pair } from "./pair-statistics";
import { CONNECT_VS_PLAIN, comparisonRow, differenceRow, valueRow } from "./scenario";
import type { BuiltScenario, Row } from "./scenario";
import { describeServerRun, measureServer } from "./server-load";
import type { ServerRun } from "./server-load";
import { H2LOAD_TIMEOUT_MS, rateLoad, saturationLoad, verifyUnary, warmUp } from "./unary-load";

/** Share of the baseline's saturation rate at which latency is measured (issue 4: 50 %). */
export const LATENCY_LOAD_SHARE = 0.5;

/**
 * B1: what the protomesh server costs over a plain grpc-js server with the same service. Both are
 * driven by h2load with a pre-encoded GetProduct: first at saturation (throughput, CPU per call),
 * then open-loop at half the plain server's saturation rate, the same rate for both (latency
 * percentiles, CPU per call). The servers' event-loop delay over the same windows gives B8's rows.
 * The TypeScript peer, @connectrpc/connect-node's gRPC server (server-connect.ts), runs in the same
 * rounds, plain, protomesh, connect-node, plain, …, and gets "connect-node vs plain grpc-js" rows.
 * protomesh with its Prometheus metrics on runs in them too, against protomesh without (issue 14).
 */
export const B1: BuiltScenario = {
  name: "B1",
  title: "server overhead: protomesh server vs plain grpc-js server",
  run: (context) =>
    withServers(["plain", "mesh", "metrics", "connect"], context, async (servers) => {
      const all = Object.values(servers);
      for (const server of all) await verifyUnary(server, context.mode);
      for (const server of all) await warmUp(server, context.mode);
      const progress = (label: string) => (round: Record<"plain" | "mesh" | "metrics" | "connect", ServerRun>, index: number) =>
        context.progress(
          `B1 ${label} round ${index + 1}/${context.pairs}: plain ${describeServerRun(round.plain)}; ` +
            `protomesh ${describeServerRun(round.mesh)}; with metrics ${describeServerRun(round.metrics)}; ` +
            `connect-node ${describeServerRun(round.connect)}`,
        );

      const saturate = (server: BenchServer) => () =>
        measureServer(server, saturationLoad(server, context.mode), { timeoutMs: H2LOAD_TIMEOUT_MS });
      const saturatedRounds = await runRounds(context.pairs, eachServer(servers, saturate), progress("saturation"));
      const saturated = pairsOf(saturatedRounds, "plain", "mesh");

      const rate = LATENCY_LOAD_SHARE * compare(saturated, (run) => run.requestsPerSecond).baseline;
      const atRate = (server: BenchServer) => () =>
        measureServer(server, rateLoad(server, context.mode, rate), {
          withLatencies: true,
          timeoutMs: H2LOAD_TIMEOUT_MS,
        });
      const loadedRounds = await runRounds(context.pairs, eachServer(servers, atRate), progress(`${rate.toFixed(0)} req/s`));
      const loaded = pairsOf(loadedRounds, "plain", "mesh");

      const at = `at ${Math.round(LATENCY_LOAD_SHARE * 100)} % load (${rate.toFixed(0)} req/s)`;
      const delay = (run: ServerRun) => run.eventLoopDelayP99Ms;
      const rows: Row[] = [
        comparisonRow("B1", "unary throughput at saturation", "req/s", "higher", compare(saturated, rps), {
          goal: { text: "≥ 0.90× plain grpc-js throughput", on: "ratio", bound: 0.9, kind: "atLeast" },
        }),
        comparisonRow("B1", "server CPU per 1000 calls at saturation", "ms", "lower", compare(saturated, cpu)),
        valueRow("B1", "calls shed by protomesh's load shedder at saturation (not counted as served)", "%", "lower", {
          protomesh: saturated.map((pair) => pair.protomesh.shedShare * 100),
        }),
        comparisonRow("B1", `latency p50 ${at}`, "ms", "lower", compare(loaded, latency("p50"))),
        comparisonRow("B1", `latency p90 ${at}`, "ms", "lower", compare(loaded, latency("p90"))),
        comparisonRow("B1", `latency p99 ${at}`, "ms", "lower", compare(loaded, latency("p99"))),
        comparisonRow("B1", `latency p99.9 ${at}`, "ms", "lower", compare(loaded, latency("p999"))),
        comparisonRow("B1", `server CPU per 1000 calls ${at}`, "ms", "lower", compare(loaded, cpu)),
        valueRow("B1", `calls shed by protomesh's load shedder ${at} (answered RESOURCE_EXHAUSTED, in the latencies)`, "%", "lower", {
          protomesh: loaded.map((pair) => pair.protomesh.shedShare * 100),
        }),
        // Added p90 and added CPU per 1000 calls are the units of Istio's published sidecar cost (issue 4).
        differenceRow("B1", `added latency p90 ${at}`, "ms", difference(loaded, latency("p90"))),
        differenceRow("B1", `added server CPU per 1000 calls ${at}`, "ms", difference(loaded, cpu)),
        ...metricsRows(pairsOf(saturatedRounds, "mesh", "metrics"), pairsOf(loadedRounds, "mesh", "metrics"), at),
        ...peerRows(pairsOf(saturatedRounds, "plain", "connect"), pairsOf(loadedRounds, "plain", "connect"), at),
        comparisonRow("B8", "server event-loop delay p99 at saturation (B1)", "ms", "lower", compare(saturated, delay)),
        comparisonRow("B8", `server event-loop delay p99 ${at} (B1)`, "ms", "lower", compare(loaded, delay)),
      ];
      return rows;
    }),
};

const rps = (run: ServerRun) => run.requestsPerSecond;
const cpu = (run: ServerRun) => run.cpuMsPer1000Requests;
const latency = (name: "p50" | "p90" | "p99" | "p999") => (run: ServerRun) => run.latencyMs?.[name] ?? Number.NaN;

/** What the server's Prometheus metrics cost (issue 14): protomesh with them against protomesh without. */
function metricsRows(saturated: Pair<ServerRun>[], loaded: Pair<ServerRun>[], at: string): Row[] {
  const options = { baselineName: "protomesh, metrics off" };
  const label = "protomesh with metrics vs without";
  return [
    comparisonRow("B1", `${label}: unary throughput at saturation`, "req/s", "higher", compare(saturated, rps), options),
    comparisonRow("B1", `${label}: server CPU per 1000 calls at saturation`, "ms", "lower", compare(saturated, cpu), options),
    comparisonRow("B1", `${label}: latency p50 ${at}`, "ms", "lower", compare(loaded, latency("p50")), options),
    comparisonRow("B1", `${label}: latency p99 ${at}`, "ms", "lower", compare(loaded, latency("p99")), options),
    comparisonRow("B1", `${label}: server CPU per 1000 calls ${at}`, "ms", "lower", compare(loaded, cpu), options),
  ];
}

/**
 * The TypeScript peer's rows: connect-node in the protomesh column against plain grpc-js, the same
 * metrics as protomesh's (no goals: the goals are protomesh's), and the rate it reached
 * at the plain server's half load: below that rate, it was saturated and its latency is its queue's.
 */
function peerRows(saturated: Pair<ServerRun>[], loaded: Pair<ServerRun>[], at: string): Row[] {
  const peer = CONNECT_VS_PLAIN;
  return [
    comparisonRow("B1", `${peer}: unary throughput at saturation`, "req/s", "higher", compare(saturated, rps)),
    comparisonRow("B1", `${peer}: server CPU per 1000 calls at saturation`, "ms", "lower", compare(saturated, cpu)),
    comparisonRow("B1", `${peer}: calls/s reached ${at}`, "req/s", "higher", compare(loaded, rps)),
    comparisonRow("B1", `${peer}: latency p50 ${at}`, "ms", "lower", compare(loaded, latency("p50"))),
    comparisonRow("B1", `${peer}: latency p90 ${at}`, "ms", "lower", compare(loaded, latency("p90"))),
    comparisonRow("B1", `${peer}: latency p99 ${at}`, "ms", "lower", compare(loaded, latency("p99"))),
    comparisonRow("B1", `${peer}: latency p99.9 ${at}`, "ms", "lower", compare(loaded, latency("p999"))),
    comparisonRow("B1", `${peer}: server CPU per 1000 calls ${at}`, "ms", "lower", compare(loaded, cpu)),
  ];
}

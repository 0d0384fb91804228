import { BENCH_PRODUCT_ID } from "./bench-catalog";
import { eachServer, withServers } from "./bench-server";
import type { BenchServer } from "./bench-server";
import { assertAllOk, runGhz } from "./ghz";
import type { GhzLoad, GhzResult } from "./ghz";
import { compare, pairsOf, runRounds } from "./pair-statistics";
import type { Pair } from "./pair-statistics";
import { CONNECT_VS_PLAIN, comparisonRow, valueRow } from "./scenario";
import { MAX_SHED_SHARE } from "./server-load";
import type { BenchMode, BuiltScenario, Row } from "./scenario";

/**
 * B11: grpc_bench's method on this machine, so that our servers' figures read beside its tables
 * (github.com/LesnyRumcajs/grpc_bench, bench.sh and README): ghz, closed loop, against each server
 * on one core, reporting calls/s and latency percentiles. Its defaults are GRPC_SERVER_CPUS=1,
 * GRPC_CLIENT_CONNECTIONS=50, GRPC_CLIENT_CONCURRENCY=1000, 20 s after a 5 s warm-up run, and its
 * runs give ghz many cores so that the client is not the bottleneck (example_benchmark.sh: 11 client
 * cores for 1 to 4 server cores). Here the server has core 0, as there, and ghz core 1 alone, so
 * the load is scaled to one client core: grpc_bench's 20 calls in flight per connection, over a
 * tenth of its connections (1000 calls over ~10 client cores ≈ 100 per core).
 * More in flight would only queue inside ghz, which tops out near 5k calls/s on one core here.
 *
 * The servers are plain grpc-js (the baseline), protomesh and connect-node, in rounds plain,
 * protomesh, connect-node, … (the suite's pairs, not grpc_bench's one run each), each round one
 * timed ghz run per server; ghz must see every call end OK.
 */

/** grpc_bench's calls in flight per connection (GRPC_CLIENT_CONCURRENCY / GRPC_CLIENT_CONNECTIONS = 1000 / 50). */
const CALLS_PER_CONNECTION = 20;
/** Connections of one client core: a tenth of grpc_bench's 50, its concurrency scaled to one client core. */
export const GHZ_CONNECTIONS = 5;
/** Calls in flight: GHZ_CONNECTIONS × CALLS_PER_CONNECTION. */
export const GHZ_CONCURRENCY = GHZ_CONNECTIONS * CALLS_PER_CONNECTION;
/** ghz's Go threads: one, the load core (grpc_bench's GRPC_CLIENT_CPUS). */
const GHZ_CPUS = 1;
/** grpc_bench's warm-up run before measuring a server (GRPC_BENCHMARK_WARMUP), full mode only. */
const GHZ_WARM_UP_S = 5;
/** Seconds of each measured run in full mode (grpc_bench: one 20 s run per server; here one per round). */
export const GHZ_RUN_SECONDS = 5;
/** Calls of each run in smoke mode. */
const GHZ_SMOKE_REQUESTS = 300;
/**
 * Calls in flight in smoke mode: no more than the minimum limit of protomesh's adaptive load
 * shedder (10), which a cold server on a busy core can fall to; full runs warm up first.
 */
const GHZ_SMOKE_CONCURRENCY = 10;
/** Bound on one ghz run beyond its own duration. */
const GHZ_TIMEOUT_MARGIN_MS = 30_000;
const warmUpTimeoutMs = GHZ_WARM_UP_S * 1000 + GHZ_TIMEOUT_MARGIN_MS;

/** What B11 reads from one ghz run against one server. */
interface GhzRun {
  ghz: GhzResult;
  /** Server CPU time per 1000 calls (ms): its CPU utilisation over the run / the call rate. */
  cpuMsPer1000Calls: number;
  /** Server CPU utilisation over the run, in cores. */
  cpuCores: number;
  /** Share of the calls protomesh's load shedder refused (not counted in the throughput). */
  shedShare: number;
}

function ghzLoad(server: BenchServer, mode: BenchMode, durationS?: number): GhzLoad {
  const shape = {
    address: server.address,
    call: "shop.catalog.v1.CatalogService.GetProduct",
    data: { id: BENCH_PRODUCT_ID },
    connections: GHZ_CONNECTIONS,
    concurrency: GHZ_CONCURRENCY,
    cpus: GHZ_CPUS,
  };
  return mode === "full"
    ? { ...shape, durationS: durationS ?? GHZ_RUN_SECONDS }
    : { ...shape, concurrency: GHZ_SMOKE_CONCURRENCY, requests: GHZ_SMOKE_REQUESTS };
}

/**
 * One ghz run against `server` with the server's own CPU over the same window. Every call must end
 * OK, but for calls protomesh's load shedder refused (RESOURCE_EXHAUSTED), at most MAX_SHED_SHARE of
 * them, which are not counted as served (as in B1).
 */
async function measureWithGhz(server: BenchServer, load: GhzLoad): Promise<GhzRun> {
  await server.mark();
  const ghz = await runGhz(load, (load.durationS ?? 0) * 1000 + GHZ_TIMEOUT_MARGIN_MS);
  const sample = await server.sample();
  const shed = ghz.statusCodes.ResourceExhausted ?? 0;
  const shedShare = ghz.count > 0 ? shed / ghz.count : 0;
  if (shed > 0 && (shed > sample.shedCalls || shedShare > MAX_SHED_SHARE)) {
    throw new Error(
      `B11: ghz on the ${server.kind} server: ${shed} RESOURCE_EXHAUSTED, the load shedder refused ${sample.shedCalls} ` +
        `(at most ${MAX_SHED_SHARE * 100} % may be shed: event-loop delay over its target, a busy core?)`,
    );
  }
  const answered = Object.fromEntries(Object.entries(ghz.statusCodes).filter(([code]) => code !== "ResourceExhausted"));
  assertAllOk({ ...ghz, count: ghz.count - shed, statusCodes: answered }, `B11: ghz on the ${server.kind} server`);
  const served = { ...ghz, requestsPerSecond: ghz.requestsPerSecond * (1 - shedShare) };
  const cpuCores = sample.cpuMs / sample.elapsedMs;
  return { ghz: served, cpuCores, cpuMsPer1000Calls: (cpuCores * 1e6) / served.requestsPerSecond, shedShare };
}

function describe(run: GhzRun): string {
  const { requestsPerSecond, latencyMs } = run.ghz;
  return (
    `${requestsPerSecond.toFixed(0)} req/s, p50 ${latencyMs.p50.toFixed(2)} ms, p99 ${latencyMs.p99.toFixed(2)} ms, ` +
    `server ${run.cpuCores.toFixed(2)} cores`
  );
}

/** B11's rows for one subject against plain grpc-js: calls/s, p50, p99, server CPU per 1000 calls. */
function rows(pairs: Pair<GhzRun>[], load: GhzLoad, prefix: string): Row[] {
  const what = `grpc_bench-style: ghz, ${load.connections} connections, ${load.concurrency} calls in flight`;
  const metric = (name: string) => `${prefix}${name} (${what})`;
  return [
    comparisonRow("B11", metric("unary throughput"), "req/s", "higher", compare(pairs, (run) => run.ghz.requestsPerSecond)),
    comparisonRow("B11", metric("latency p50"), "ms", "lower", compare(pairs, (run) => run.ghz.latencyMs.p50)),
    comparisonRow("B11", metric("latency p99"), "ms", "lower", compare(pairs, (run) => run.ghz.latencyMs.p99)),
    comparisonRow("B11", metric("server CPU per 1000 calls"), "ms", "lower", compare(pairs, (run) => run.cpuMsPer1000Calls)),
  ];
}

/** B11: grpc_bench's ghz load against plain grpc-js, protomesh and connect-node. */
export const B11: BuiltScenario = {
  name: "B11",
  title: "grpc_bench-style: ghz against plain grpc-js, protomesh and connect-node (req/s, p50, p99)",
  run: (context) =>
    withServers(["plain", "mesh", "connect"], context, async (servers) => {
      if (context.mode === "full") {
        // Not a measurement, as grpc_bench's warm-up is not: its statuses are not checked.
        for (const server of Object.values(servers)) await runGhz(ghzLoad(server, "full", GHZ_WARM_UP_S), warmUpTimeoutMs);
      }
      const measure = (server: BenchServer) => () => measureWithGhz(server, ghzLoad(server, context.mode));
      const rounds = await runRounds(context.pairs, eachServer(servers, measure), (round, index) =>
        context.progress(
          `B11 round ${index + 1}/${context.pairs}: plain ${describe(round.plain)}; protomesh ${describe(round.mesh)}; ` +
            `connect-node ${describe(round.connect)}`,
        ),
      );
      const load = ghzLoad(servers.plain, context.mode);
      return [
        ...rows(pairsOf(rounds, "plain", "mesh"), load, ""),
        valueRow("B11", "calls shed by protomesh's load shedder (not counted as served)", "%", "lower", {
          protomesh: pairsOf(rounds, "plain", "mesh").map((pair) => pair.protomesh.shedShare * 100),
        }),
        ...rows(pairsOf(rounds, "plain", "connect"), load, `${CONNECT_VS_PLAIN}: `),
      ];
    }),
};

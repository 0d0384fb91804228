import { isTlsServer, withServers } from "./bench-server";
import { MTLS_COMPARISONS, createBenchTls } from "./bench-tls";
import type { MtlsComparison } from "./bench-tls";
import { compare, difference, pairsOf, runRounds } from "./pair-statistics";
import type { Pair } from "./pair-statistics";
import { LATENCY_LOAD_SHARE } from "./scenario-b1-server-overhead";
import { comparisonRow, differenceRow, valueRow } from "./scenario";
import type { BuiltScenario, Row } from "./scenario";
import { describeServerRun, measureServer } from "./server-load";
import type { ServerRun } from "./server-load";
import { TlsRelay } from "./tls-relay";
import { H2LOAD_TIMEOUT_MS, rateLoad, saturationLoad, verifyUnary, warmUp } from "./unary-load";
import type { LoadTarget } from "./unary-load";

/**
 * B1T counts every run, however many calls protomesh's load shedder refused, where B1 refuses a run
 * with a fifth or more shed (MAX_SHED_SHARE: there, a sign of a core shared with other work). Under
 * mTLS at saturation the protomesh server sheds from none to well over half of the calls from one
 * run to the next on an otherwise idle machine (BENCHMARKS.md, issue 13): that is a figure of its
 * own, shown in the shed and event-loop delay rows; throughput counts the calls served.
 */
const B1T_MAX_SHED_SHARE = 1;

/** The servers of B1T, in the order of each round. */
const KINDS = ["plain", "mesh", "plain-tls", "mesh-tls"] as const;
type Kind = (typeof KINDS)[number];

/**
 * B1T: B1 with mTLS on both sides (issue 13). Four servers in rounds, plain grpc-js and protomesh
 * in plaintext, then the same two with STRICT mTLS from one bench CA (bench-tls.ts): protomesh
 * through createServer's `tls` option, plain grpc-js through ServerCredentials.createSsl with a
 * client certificate required. B1's load and method: h2load at saturation (throughput, CPU per
 * call), then open loop at half the plain mTLS server's saturation rate, the same rate for all four
 * (latency, CPU per call). h2load presents no client certificate, so it reaches every server
 * through a relay on the load core (tls-relay-process.ts) that opens one connection per h2load
 * connection, mTLS with the bench client's certificate to the -tls servers, plain TCP to the
 * others: the same hop for all four, one B1 does not have (compare B1T's latencies within B1T).
 * What mTLS costs shows as each server against itself in plaintext; protomesh's overhead under
 * mTLS, as protomesh against plain grpc-js, both with it.
 */
export const B1T: BuiltScenario = {
  name: "B1T",
  title: "server overhead under mTLS: protomesh vs plain grpc-js, both with mTLS and in plaintext",
  run: async (context) => {
    const tls = await createBenchTls();
    try {
      return await withServers(
        KINDS,
        context,
        async (servers) => {
          const relay = await TlsRelay.start(tls.client, context);
          try {
            const targets = {} as Record<Kind, LoadTarget>;
            for (const kind of KINDS) targets[kind] = await relay.open(servers[kind]);
            for (const kind of KINDS) await verifyUnary(servers[kind], context.mode, isTlsServer(kind) ? tls.client : undefined);
            for (const kind of KINDS) await warmUp(targets[kind], context.mode);
            const progress = (label: string) => (round: Record<Kind, ServerRun>, index: number) =>
              context.progress(
                `B1T ${label} round ${index + 1}/${context.pairs}: ` +
                  KINDS.map((kind) => `${kind} ${describeServerRun(round[kind])}`).join("; "),
              );
            const eachKind = (measure: (kind: Kind) => Promise<ServerRun>) =>
              Object.fromEntries(KINDS.map((kind) => [kind, () => measure(kind)])) as Record<Kind, () => Promise<ServerRun>>;

            const saturate = (kind: Kind) =>
              measureServer(servers[kind], saturationLoad(targets[kind], context.mode), {
                timeoutMs: H2LOAD_TIMEOUT_MS,
                maxShedShare: B1T_MAX_SHED_SHARE,
              });
            const saturated = await runRounds(context.pairs, eachKind(saturate), progress("saturation"));

            const rate = LATENCY_LOAD_SHARE * compare(pairsOf(saturated, "plain-tls", "mesh-tls"), rps).baseline;
            const atRate = (kind: Kind) =>
              measureServer(servers[kind], rateLoad(targets[kind], context.mode, rate), {
                withLatencies: true,
                timeoutMs: H2LOAD_TIMEOUT_MS,
                maxShedShare: B1T_MAX_SHED_SHARE,
              });
            const loaded = await runRounds(context.pairs, eachKind(atRate), progress(`${rate.toFixed(0)} req/s`));

            // One rate for all four: half the plain mTLS server's saturation rate, as B1 takes half the plain server's.
            const at = `at ${Math.round(LATENCY_LOAD_SHARE * 100)} % load (${rate.toFixed(0)} req/s)`;
            const rows = (comparison: MtlsComparison, baseline: Kind, subject: Kind) => {
              const saturatedPairs = pairsOf(saturated, baseline, subject);
              const loadedPairs = pairsOf(loaded, baseline, subject);
              return [
                ...comparisonRows(comparison, saturatedPairs, loadedPairs, at),
                ...addedRows(comparison, saturatedPairs, loadedPairs, at),
              ];
            };
            const shed = (kind: Kind, what: string) => [
              valueRow("B1T", `${what}: calls shed by protomesh's load shedder at saturation (not counted as served)`, "%", "lower", {
                protomesh: saturated.map((round) => round[kind].shedShare * 100),
              }),
              valueRow("B1T", `${what}: calls shed by protomesh's load shedder ${at} (answered RESOURCE_EXHAUSTED, in the latencies)`, "%", "lower", {
                protomesh: loaded.map((round) => round[kind].shedShare * 100),
              }),
            ];
            return [
              ...rows(MTLS_COMPARISONS.mtls, "plain-tls", "mesh-tls"),
              ...shed("mesh-tls", "protomesh, mTLS"),
              ...rows(MTLS_COMPARISONS.plaintext, "plain", "mesh"),
              ...shed("mesh", "protomesh, plaintext"),
              ...rows(MTLS_COMPARISONS.plainCost, "plain", "plain-tls"),
              ...rows(MTLS_COMPARISONS.meshCost, "mesh", "mesh-tls"),
            ];
          } finally {
            await relay.stop();
          }
        },
        tls.server,
      );
    } finally {
      await tls.remove();
    }
  },
};

const rps = (run: ServerRun) => run.requestsPerSecond;
const cpu = (run: ServerRun) => run.cpuMsPer1000Requests;
const latency = (name: "p50" | "p90" | "p99" | "p999") => (run: ServerRun) => run.latencyMs?.[name] ?? Number.NaN;
const delay = (run: ServerRun) => run.eventLoopDelayP99Ms;

/** B1's figures for one comparison: throughput and CPU at saturation, latency and CPU at the rate, event-loop delay at both. */
function comparisonRows(comparison: MtlsComparison, saturated: Pair<ServerRun>[], loaded: Pair<ServerRun>[], at: string): Row[] {
  const options = { baselineName: comparison.baselineName };
  const label = comparison.prefix;
  return [
    comparisonRow("B1T", `${label}: unary throughput at saturation`, "req/s", "higher", compare(saturated, rps), options),
    comparisonRow("B1T", `${label}: server CPU per 1000 calls at saturation`, "ms", "lower", compare(saturated, cpu), options),
    comparisonRow("B1T", `${label}: latency p50 ${at}`, "ms", "lower", compare(loaded, latency("p50")), options),
    comparisonRow("B1T", `${label}: latency p90 ${at}`, "ms", "lower", compare(loaded, latency("p90")), options),
    comparisonRow("B1T", `${label}: latency p99 ${at}`, "ms", "lower", compare(loaded, latency("p99")), options),
    comparisonRow("B1T", `${label}: latency p99.9 ${at}`, "ms", "lower", compare(loaded, latency("p999")), options),
    comparisonRow("B1T", `${label}: server CPU per 1000 calls ${at}`, "ms", "lower", compare(loaded, cpu), options),
    // What protomesh's load shedder reads (its target: 70 ms); B8's measure, for B1T's servers.
    comparisonRow("B1T", `${label}: server event-loop delay p99 at saturation`, "ms", "lower", compare(saturated, delay), options),
    comparisonRow("B1T", `${label}: server event-loop delay p99 ${at}`, "ms", "lower", compare(loaded, delay), options),
  ];
}

/**
 * What the subject adds to its baseline, in Istio's units (issue 4): CPU per 1000 calls (ms, that
 * is µs per call) at saturation and at the rate, and p90 at the rate.
 */
function addedRows(comparison: MtlsComparison, saturated: Pair<ServerRun>[], loaded: Pair<ServerRun>[], at: string): Row[] {
  const options = { baselineName: comparison.baselineName };
  const label = comparison.prefix;
  return [
    differenceRow("B1T", `${label}: added server CPU per 1000 calls at saturation`, "ms", difference(saturated, cpu), options),
    differenceRow("B1T", `${label}: added server CPU per 1000 calls ${at}`, "ms", difference(loaded, cpu), options),
    differenceRow("B1T", `${label}: added latency p90 ${at}`, "ms", difference(loaded, latency("p90")), options),
  ];
}

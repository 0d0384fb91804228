import { BenchClient } from "./bench-client";
import { withServers } from "./bench-server";
import { MTLS_COMPARISONS, createBenchTls } from "./bench-tls";
import type { MtlsComparison } from "./bench-tls";
import type { ClientKind, ClientLoad, ClientResult } from "./client-process";
import { compare, difference, pairsOf, runRounds } from "./pair-statistics";
import type { Pair } from "./pair-statistics";
import { LATENCY_CONCURRENCY, THROUGHPUT_CONCURRENCY, clientLoad, describeClientRun } from "./scenario-b2-client-overhead";
import { comparisonRow, differenceRow } from "./scenario";
import type { BuiltScenario, Row } from "./scenario";
import { verifyUnary } from "./unary-load";

/** The clients of B2T, in the order of each round. */
const KINDS = ["plain", "mesh", "plain-tls", "mesh-tls"] as const satisfies readonly ClientKind[];
type Kind = (typeof KINDS)[number];

/** How long each client runs at THROUGHPUT_CONCURRENCY before the first round (full mode), as in B2. */
const CLIENT_WARM_UP_MS = 4_000;

/**
 * B2T: B2 with mTLS on both sides (issue 13). Four Node clients on the load core, in rounds: plain
 * grpc-js and protomesh's createClient calling a plain grpc-js server in plaintext, then the same two
 * with mTLS from one bench CA (bench-tls.ts) calling a plain grpc-js server that requires a client
 * certificate (ServerCredentials.createSsl): protomesh through createClient's `tls` option, plain
 * grpc-js through credentials.createSsl with the same files. Both servers live on the server core,
 * one loaded at a time. B2's loads: at concurrency 1, latency p50/p99; at 100, calls/s and client
 * CPU per call. Each client's channel opens its connection (the handshake) before the first
 * measured call, so the figures are the cost of encrypted calls, not of handshakes.
 */
export const B2T: BuiltScenario = {
  name: "B2T",
  title: "client overhead under mTLS: protomesh vs plain grpc-js, both with mTLS and in plaintext",
  run: async (context) => {
    const tls = await createBenchTls();
    try {
      return await withServers(
        ["plain", "plain-tls"],
        context,
        async (servers) => {
          await verifyUnary(servers.plain, context.mode);
          await verifyUnary(servers["plain-tls"], context.mode, tls.client);
          const clients = {} as Record<Kind, BenchClient>;
          try {
            for (const kind of KINDS) {
              const isTls = kind === "plain-tls" || kind === "mesh-tls";
              const server = isTls ? servers["plain-tls"] : servers.plain;
              clients[kind] = await BenchClient.start(kind, server.address, undefined, context, isTls ? tls.client : undefined);
            }
            if (context.mode === "full") {
              const warmUpLoad: ClientLoad = { ...clientLoad(context, THROUGHPUT_CONCURRENCY), warmUpMs: 0, durationMs: CLIENT_WARM_UP_MS };
              for (const kind of KINDS) await clients[kind].run(warmUpLoad);
            }
            const measure = (concurrency: number) => {
              const load = clientLoad(context, concurrency);
              const runs = Object.fromEntries(KINDS.map((kind) => [kind, () => clients[kind].run(load)])) as Record<Kind, () => Promise<ClientResult>>;
              return runRounds(context.pairs, runs, (round, index) =>
                context.progress(
                  `B2T c=${concurrency} round ${index + 1}/${context.pairs}: ` +
                    KINDS.map((kind) => `${kind} ${describeClientRun(round[kind])}`).join("; "),
                ),
              );
            };
            const single = await measure(LATENCY_CONCURRENCY);
            const many = await measure(THROUGHPUT_CONCURRENCY);
            const rows = (comparison: MtlsComparison, baseline: Kind, subject: Kind) =>
              comparisonRows(comparison, pairsOf(single, baseline, subject), pairsOf(many, baseline, subject));
            return [
              ...rows(MTLS_COMPARISONS.mtls, "plain-tls", "mesh-tls"),
              ...rows(MTLS_COMPARISONS.plaintext, "plain", "mesh"),
              ...rows(MTLS_COMPARISONS.plainCost, "plain", "plain-tls"),
              ...rows(MTLS_COMPARISONS.meshCost, "mesh", "mesh-tls"),
            ];
          } finally {
            await Promise.all(Object.values<BenchClient>(clients).map((client) => client.stop()));
          }
        },
        tls.server,
      );
    } finally {
      await tls.remove();
    }
  },
};

const cpuPer1000 = (run: ClientResult) => (run.process.cpuMs / run.calls) * 1000;

/** B2's figures for one comparison: latency at c=1 (and what the subject adds), throughput and CPU at c=100. */
function comparisonRows(comparison: MtlsComparison, single: Pair<ClientResult>[], many: Pair<ClientResult>[]): Row[] {
  const options = { baselineName: comparison.baselineName };
  const label = comparison.prefix;
  const c1 = `c=${LATENCY_CONCURRENCY}`;
  const c100 = `c=${THROUGHPUT_CONCURRENCY}`;
  return [
    comparisonRow("B2T", `${label}: call latency p50 at ${c1}`, "µs", "lower", compare(single, (run) => run.p50Us), options),
    comparisonRow("B2T", `${label}: call latency p99 at ${c1}`, "µs", "lower", compare(single, (run) => run.p99Us), options),
    differenceRow("B2T", `${label}: added latency p50 at ${c1}`, "µs", difference(single, (run) => run.p50Us), options),
    comparisonRow("B2T", `${label}: throughput at ${c100}`, "calls/s", "higher", compare(many, (run) => run.callsPerSecond), options),
    comparisonRow("B2T", `${label}: client CPU per 1000 calls at ${c100}`, "ms", "lower", compare(many, cpuPer1000), options),
    differenceRow("B2T", `${label}: added client CPU per 1000 calls at ${c100}`, "ms", difference(many, cpuPer1000), options),
  ];
}

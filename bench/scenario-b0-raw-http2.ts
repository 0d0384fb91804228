import { withServers } from "./bench-server";
import { compare, runPairs } from "./pair-statistics";
import { comparisonRow } from "./scenario";
import type { BuiltScenario } from "./scenario";
import { describeServerRun, measureServer } from "./server-load";
import { H2LOAD_TIMEOUT_MS, saturationLoad, verifyUnary, warmUp } from "./unary-load";

/**
 * B0: the ceiling of one Node server core. GetProduct answered by node:http2 alone (server-raw-http2.ts)
 * against the protomesh server, both at saturation: the ratio is the share of the raw ceiling
 * protomesh reaches, all of grpc-js and the server kit included.
 */
export const B0: BuiltScenario = {
  name: "B0",
  title: "raw node:http2 answering gRPC frames: the ceiling of a Node server core",
  run: (context) =>
    withServers(["raw", "mesh"], context, async ({ raw, mesh }) => {
      for (const server of [raw, mesh]) await verifyUnary(server, context.mode);
      for (const server of [raw, mesh]) await warmUp(server, context.mode);
      const measure = (server: typeof raw) => () =>
        measureServer(server, saturationLoad(server, context.mode), { timeoutMs: H2LOAD_TIMEOUT_MS });
      const pairs = await runPairs(context.pairs, measure(raw), measure(mesh), (pair, index) =>
        context.progress(
          `B0 pair ${index + 1}/${context.pairs}: raw ${describeServerRun(pair.baseline)}; ` +
            `protomesh ${describeServerRun(pair.protomesh)}`,
        ),
      );
      const baselineName = "raw node:http2";
      const rps = compare(pairs, (run) => run.requestsPerSecond);
      const cpu = compare(pairs, (run) => run.cpuMsPer1000Requests);
      return [
        comparisonRow("B0", "unary throughput at saturation", "req/s", "higher", rps, { baselineName }),
        comparisonRow("B0", "server CPU per 1000 calls at saturation", "ms", "lower", cpu, { baselineName }),
      ];
    }),
};

import { CatalogServiceService, SearchProductsRequest } from "../generated/ts/shop/catalog/v1/catalog";
import { STREAM_MESSAGES_PER_CALL, STREAM_QUERY } from "./bench-catalog";
import { eachServer, withServers } from "./bench-server";
import type { BenchServer } from "./bench-server";
import { verifyWithGhz } from "./ghz";
import { encodeGrpcFrame } from "./grpc-frame";
import type { H2loadLoad } from "./h2load";
import { compare, pairsOf, runRounds } from "./pair-statistics";
import { CONNECT_VS_PLAIN, comparisonRow } from "./scenario";
import type { BenchMode, BuiltScenario } from "./scenario";
import { describeServerRun, measureServer } from "./server-load";
import type { ServerRun } from "./server-load";
import { H2LOAD_TIMEOUT_MS, RUN_SECONDS, RUN_WARM_UP_MS, warmUp } from "./unary-load";

const SEARCH_PATH = CatalogServiceService.searchProducts.path;
const SEARCH_BODY = encodeGrpcFrame(SearchProductsRequest.encode({ query: STREAM_QUERY, limit: 0 }).finish());

/**
 * Streams in flight: each call streams STREAM_MESSAGES_PER_CALL messages of ~1 KiB (~190 KiB per
 * call), so a few streams per connection keep the server busy without piling up write buffers.
 */
function streamingLoad(server: BenchServer, mode: BenchMode): H2loadLoad {
  const shape = { url: server.url(SEARCH_PATH), body: SEARCH_BODY, connections: 2, streamsPerConnection: 4 };
  return mode === "full"
    ? { ...shape, durationS: RUN_SECONDS, warmUpMs: RUN_WARM_UP_MS }
    : { ...shape, requests: 20 };
}

/**
 * B5: server-streaming throughput. SearchProducts of the real catalog handlers, streaming
 * STREAM_MESSAGES_PER_CALL products per call, driven by h2load at saturation; messages/s is
 * calls/s × messages per call. connect-node's gRPC server (server-connect.ts) streams the same
 * messages in the same rounds, plain, protomesh, connect-node, … ("connect-node vs plain grpc-js").
 */
export const B5: BuiltScenario = {
  name: "B5",
  title: "server-streaming messages/s: protomesh vs plain grpc-js",
  run: (context) =>
    withServers(["plain", "mesh", "connect"], context, async (servers) => {
      for (const server of Object.values(servers)) {
        await verifyWithGhz({
          address: server.address,
          call: "shop.catalog.v1.CatalogService.SearchProducts",
          data: { query: STREAM_QUERY },
          requests: 20,
        });
        await warmUp(server, context.mode, streamingLoad(server, context.mode));
      }
      const measure = (server: BenchServer) => () =>
        measureServer(server, streamingLoad(server, context.mode), { timeoutMs: H2LOAD_TIMEOUT_MS });
      const messagesPerSecond = (run: ServerRun) => run.requestsPerSecond * STREAM_MESSAGES_PER_CALL;
      const cpuPer1000Messages = (run: ServerRun) => run.cpuMsPer1000Requests / STREAM_MESSAGES_PER_CALL;
      const describe = (run: ServerRun) => describeServerRun(run, `${messagesPerSecond(run).toFixed(0)} msg/s`);
      const rounds = await runRounds(context.pairs, eachServer(servers, measure), (round, index) =>
        context.progress(
          `B5 round ${index + 1}/${context.pairs}: plain ${describe(round.plain)}; protomesh ${describe(round.mesh)}; ` +
            `connect-node ${describe(round.connect)}`,
        ),
      );
      const pairs = pairsOf(rounds, "plain", "mesh");
      const peer = pairsOf(rounds, "plain", "connect");
      return [
        comparisonRow("B5", "server-streaming messages/s at saturation", "msg/s", "higher", compare(pairs, messagesPerSecond), {
          goal: { text: "≥ 0.95× plain grpc-js", on: "ratio", bound: 0.95, kind: "atLeast" },
        }),
        comparisonRow("B5", "server CPU per 1000 streamed messages", "ms", "lower", compare(pairs, cpuPer1000Messages)),
        comparisonRow(
          "B5",
          `${CONNECT_VS_PLAIN}: server-streaming messages/s at saturation`,
          "msg/s",
          "higher",
          compare(peer, messagesPerSecond),
        ),
        comparisonRow("B5", `${CONNECT_VS_PLAIN}: server CPU per 1000 streamed messages`, "ms", "lower", compare(peer, cpuPer1000Messages)),
      ];
    }),
};

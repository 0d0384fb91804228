import { CatalogServiceService, SearchProductsRequest } from "../generated/ts/shop/catalog/v1/catalog";
import { HOLD_QUERY } from "./bench-catalog";
import { BenchServer } from "./bench-server";
import { encodeGrpcFrame } from "./grpc-frame";
import { startH2load } from "./h2load";
import { compare, runPairs } from "./pair-statistics";
import { comparisonRow } from "./scenario";
import type { BenchContext, BuiltScenario } from "./scenario";
import type { ServerKind } from "./server-process";

/** The unit of the figure (issue 4: memory per 10k concurrent streams). */
export const STREAMS_PER_FIGURE = 10_000;

/**
 * Streams per connection: under protomesh's default SETTINGS_MAX_CONCURRENT_STREAMS (1000), so
 * 10k streams take 20 connections, as a fleet of clients would open them.
 */
const STREAMS_PER_CONNECTION = 500;
/** How long the streams may take to open, and how often the server is asked. */
const OPEN_TIMEOUT_MS = 60_000;
const POLL_MS = 100;

const HOLD_BODY = encodeGrpcFrame(SearchProductsRequest.encode({ query: HOLD_QUERY, limit: 0 }).finish());
const MIB = 1024 * 1024;

/** Memory a server holds per STREAMS_PER_FIGURE open streams, from one fresh process. */
interface MemoryRun {
  rssMib: number;
  heapMib: number;
}

/**
 * B6: memory per 10k concurrent streams. Each run starts a fresh server, collects garbage, has
 * h2load open the streams (SearchProducts with a bench-only query that sends one ~1 KiB message
 * and holds the stream), waits until the server holds them all, collects garbage again and reads
 * RSS and V8 heap. The difference, scaled to 10k streams, is the figure.
 */
export const B6: BuiltScenario = {
  name: "B6",
  title: "memory per 10k concurrent streams: protomesh vs plain grpc-js",
  run: async (context) => {
    const streams = context.mode === "full" ? STREAMS_PER_FIGURE : 200;
    const pairs = await runPairs(
      context.pairs,
      () => measureMemory("plain", streams, context),
      () => measureMemory("mesh", streams, context),
      (pair, index) =>
        context.progress(
          `B6 pair ${index + 1}/${context.pairs}: RSS/10k plain ${pair.baseline.rssMib.toFixed(1)} MiB, ` +
            `protomesh ${pair.protomesh.rssMib.toFixed(1)} MiB`,
        ),
    );
    const label = `per 10k concurrent streams (${streams} measured)`;
    return [
      comparisonRow("B6", `server RSS ${label}`, "MiB", "lower", compare(pairs, (run) => run.rssMib)),
      comparisonRow("B6", `server V8 heap ${label}`, "MiB", "lower", compare(pairs, (run) => run.heapMib)),
    ];
  },
};

async function measureMemory(kind: ServerKind, streams: number, context: BenchContext): Promise<MemoryRun> {
  const server = await BenchServer.start(kind, context);
  try {
    const before = await server.collectGarbage();
    const connections = Math.ceil(streams / STREAMS_PER_CONNECTION);
    const h2load = startH2load(
      {
        url: server.url(CatalogServiceService.searchProducts.path),
        body: HOLD_BODY,
        connections,
        streamsPerConnection: Math.ceil(streams / connections),
        requests: streams,
      },
      OPEN_TIMEOUT_MS * 2,
    );
    // h2load ends only when killed, its summary then missing: its outcome is not a figure.
    const ended = h2load.done.then(
      () => "h2load ended",
      (error: unknown) => String(error),
    );
    try {
      const deadline = Date.now() + OPEN_TIMEOUT_MS;
      let held = 0;
      while (held < streams) {
        if (Date.now() > deadline) {
          throw new Error(`B6 ${kind}: ${held} of ${streams} streams open after ${OPEN_TIMEOUT_MS} ms`);
        }
        const pause = new Promise<undefined>((resolve) => setTimeout(() => resolve(undefined), POLL_MS));
        const outcome = await Promise.race([ended, pause]);
        if (outcome !== undefined) {
          throw new Error(`B6 ${kind}: h2load stopped before the streams were open: ${outcome}`);
        }
        held = (await server.sample()).heldStreams;
      }
      const after = await server.collectGarbage();
      const scale = STREAMS_PER_FIGURE / streams;
      return {
        rssMib: ((after.rssBytes - before.rssBytes) * scale) / MIB,
        heapMib: ((after.heapUsedBytes - before.heapUsedBytes) * scale) / MIB,
      };
    } finally {
      h2load.kill();
      await ended;
    }
  } finally {
    await server.stop();
  }
}

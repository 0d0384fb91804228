import { Server, ServerCredentials } from "@grpc/grpc-js";
import { Registry } from "prom-client";
import { CatalogServiceService } from "../generated/ts/shop/catalog/v1/catalog";
import { createLogger } from "../mesh/logger";
import { createServer } from "../mesh/server";
import { HeldStreams, benchCatalog } from "./bench-catalog";
import { plainServerCredentials, tlsFilesFromFlags } from "./bench-tls";
import { benchTracer } from "./bench-tracer";
import { flag, serveControl } from "./control-channel";
import { ProcessProbe } from "./process-probe";
import { startConnectServer } from "./server-connect";
import { startRawHttp2Server } from "./server-raw-http2";

/**
 * Entry point of a benchmark server process:
 * `--kind raw|plain|mesh|metrics|tracing|connect|plain-tls|mesh-tls` on 127.0.0.1, an ephemeral port
 * (`--ca --cert --key` with the -tls kinds). The harness starts it pinned to the server core with
 * stdout (the pino log, at the production level) sent to a file or /dev/null, and drives it over
 * IPC: mark / sample / gc / stop.
 *
 * - raw: node:http2 answering gRPC frames by hand (B0);
 * - plain: a plain grpc-js Server with the bench catalog and nothing else (the baseline);
 * - mesh: protomesh's createServer with every default (health, reflection, access log, in-flight
 *   tracking, handler guard, limits) and the same bench catalog;
 * - metrics: mesh with its Prometheus metrics on (mesh/metrics.ts), the cost of observability (B1);
 * - tracing: mesh with a span per call (mesh/tracing.ts; bench-tracer.ts drops the batches), for the profile;
 * - connect: @connectrpc/connect-node's gRPC protocol over node:http2 with the same products and
 *   answers (server-connect.ts), the TypeScript peer (B1, B5, B11);
 * - plain-tls: plain with grpc-js' own STRICT mTLS (ServerCredentials.createSsl, a client
 *   certificate required), the baseline of B1T and B2T (bench-tls.ts);
 * - mesh-tls: mesh with its `tls` option, the same files (B1T).
 */

/** The kinds of server this entry point starts. */
export const SERVER_KINDS = ["raw", "plain", "mesh", "metrics", "tracing", "connect", "plain-tls", "mesh-tls"] as const;
export type ServerKind = (typeof SERVER_KINDS)[number];

/** A started server: its port, how to stop it, and how many calls it has shed so far (protomesh's load shedder). */
interface StartedServer {
  port: number;
  stop: () => Promise<void>;
  shedCalls: () => number;
}

const NOTHING_SHED = () => 0;

async function start(kind: ServerKind, held: HeldStreams): Promise<StartedServer> {
  if (kind === "raw") {
    const raw = await startRawHttp2Server();
    return { port: raw.port, stop: () => raw.close(), shedCalls: NOTHING_SHED };
  }
  if (kind === "connect") {
    const connect = await startConnectServer();
    return { port: connect.port, stop: () => connect.close(), shedCalls: NOTHING_SHED };
  }
  if (kind === "plain" || kind === "plain-tls") {
    const server = new Server();
    server.addService(CatalogServiceService, benchCatalog(held));
    const credentials = kind === "plain-tls" ? plainServerCredentials(tlsFilesFromFlags()) : ServerCredentials.createInsecure();
    const port = await new Promise<number>((resolve, reject) =>
      server.bindAsync("127.0.0.1:0", credentials, (error, bound) =>
        error ? reject(error) : resolve(bound),
      ),
    );
    return { port, stop: async () => server.forceShutdown(), shedCalls: NOTHING_SHED };
  }
  // metrics: the same with its Prometheus metrics counted (a registry of its own; scraping is not measured).
  const metrics = kind === "metrics" ? new Registry() : undefined;
  const tracer = kind === "tracing" ? benchTracer() : undefined;
  const tls = kind === "mesh-tls" ? tlsFilesFromFlags() : undefined;
  const mesh = createServer({ name: "bench-catalog", logger: createLogger({ name: "bench-catalog" }), metrics, tracer, tls });
  mesh.addService(CatalogServiceService, benchCatalog(held));
  const port = await mesh.listen("127.0.0.1:0");
  return { port, stop: () => mesh.drain(1_000), shedCalls: () => mesh.shedder?.shed ?? 0 };
}

async function main(): Promise<void> {
  const kind = flag("kind") as ServerKind;
  if (!SERVER_KINDS.includes(kind)) throw new Error(`bench server: --kind must be one of ${SERVER_KINDS.join(", ")}`);
  const held = new HeldStreams();
  const probe = new ProcessProbe();
  const server = await start(kind, held);
  let shedAtMark = 0;
  const sample = () => ({ ...probe.read(), heldStreams: held.count, shedCalls: server.shedCalls() - shedAtMark });
  serveControl(
    {
      mark: () => {
        shedAtMark = server.shedCalls();
        probe.mark();
      },
      sample,
      gc: () => {
        // Two passes: the first may only schedule finalization of what it found dead.
        const gc = (globalThis as { gc?: () => void }).gc;
        if (!gc) throw new Error("bench server: start node with --expose-gc to measure memory");
        gc();
        gc();
        return sample();
      },
      stop: async () => {
        probe.close();
        await server.stop();
        setImmediate(() => process.exit(0));
      },
    },
    { port: server.port },
  );
}

main().catch((error: unknown) => {
  process.stderr.write(`bench server failed: ${String(error)}\n`);
  process.exit(1);
});

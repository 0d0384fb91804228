import { CatalogServiceService, GetProductRequest } from "../generated/ts/shop/catalog/v1/catalog";
import { BENCH_PRODUCT_ID } from "./bench-catalog";
import type { BenchServer } from "./bench-server";
import type { TlsFiles } from "./bench-tls";
import { verifyWithGhz } from "./ghz";
import { encodeGrpcFrame } from "./grpc-frame";
import type { H2loadLoad } from "./h2load";
import { runH2load } from "./h2load";
import type { BenchMode } from "./scenario";

/** The unary call of B0/B1: GetProduct, one field in the request, a ~1 KiB response. */
export const UNARY_PATH = CatalogServiceService.getProduct.path;

/** The request body h2load sends: the GetProduct request, pre-encoded as one gRPC frame. */
export const UNARY_BODY = encodeGrpcFrame(GetProductRequest.encode({ id: BENCH_PRODUCT_ID }).finish());

/**
 * Streams in flight at saturation: 4 connections × 25 streams. Enough to keep one Node core busy
 * (the server, not h2load, is the bottleneck: h2load uses ~10 % of its core here), few enough that
 * queueing does not dominate the latency figures.
 */
export const SATURATION_CONNECTIONS = 4;
export const SATURATION_STREAMS_PER_CONNECTION = 25;

/**
 * Seconds measured in each timed run, after h2load's warm-up of RUN_WARM_UP_MS (full mode). The
 * servers live through all pairs and are warmed once before the first, so the warm-up inside a
 * run only has to open connections and fill the pipeline. Short runs and more pairs cancel this
 * machine's drift better than long runs and few pairs.
 */
export const RUN_SECONDS = 3;
export const RUN_WARM_UP_MS = 500;
/** Requests of each counted run (smoke mode). */
export const SMOKE_REQUESTS = 300;

/** Where h2load sends its requests: a server, or the TLS relay in front of one (B1T, tls-relay.ts). */
export type LoadTarget = Pick<BenchServer, "url">;

/** Bound on any one h2load run. */
export const H2LOAD_TIMEOUT_MS = 60_000;

/** A closed-loop load that saturates the server: timed in full mode, a few hundred requests in smoke. */
export function saturationLoad(server: LoadTarget, mode: BenchMode, path = UNARY_PATH, body = UNARY_BODY): H2loadLoad {
  const shape = { url: server.url(path), body, connections: SATURATION_CONNECTIONS };
  return mode === "full"
    ? {
        ...shape,
        streamsPerConnection: SATURATION_STREAMS_PER_CONNECTION,
        durationS: RUN_SECONDS,
        warmUpMs: RUN_WARM_UP_MS,
      }
    : { ...shape, streamsPerConnection: 10, requests: SMOKE_REQUESTS };
}

/**
 * An open-loop load at `requestsPerSecond` in total (h2load --rps, per connection), the streams
 * per connection capped as at saturation.
 */
export function rateLoad(server: LoadTarget, mode: BenchMode, requestsPerSecond: number): H2loadLoad {
  const shape = {
    url: server.url(UNARY_PATH),
    body: UNARY_BODY,
    connections: SATURATION_CONNECTIONS,
    streamsPerConnection: SATURATION_STREAMS_PER_CONNECTION,
    rpsPerConnection: Math.max(1, Math.round(requestsPerSecond / SATURATION_CONNECTIONS)),
  };
  return mode === "full" ? { ...shape, durationS: RUN_SECONDS } : { ...shape, requests: SMOKE_REQUESTS };
}

/**
 * Checks with ghz (grpc-go) that GetProduct on `server` ends OK, before anything is measured; with
 * `tls` (the client side of the bench TLS) over mTLS.
 */
export function verifyUnary(server: BenchServer, mode: BenchMode, tls?: TlsFiles): Promise<void> {
  return verifyWithGhz({
    address: server.address,
    call: "shop.catalog.v1.CatalogService.GetProduct",
    data: { id: BENCH_PRODUCT_ID },
    requests: mode === "full" ? 1000 : 50,
    tls,
  });
}

/**
 * Lets the server's JIT settle before the first pair (full mode only; smoke runs are not figures).
 * Measured here: with 2 s, B5's throughput still rose by half over the first three pairs, which
 * favours protomesh (it runs second in each pair); after 6 s successive pairs stay within the noise.
 */
export async function warmUp(server: LoadTarget, mode: BenchMode, load = saturationLoad(server, mode)): Promise<void> {
  if (mode !== "full") return;
  await runH2load({ ...load, durationS: 6, warmUpMs: undefined }, H2LOAD_TIMEOUT_MS);
}

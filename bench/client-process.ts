import { credentials } from "@grpc/grpc-js";
import { createHistogram } from "node:perf_hooks";
import { CatalogServiceClient } from "../generated/ts/shop/catalog/v1/catalog";
import { Registry } from "prom-client";
import { createClient } from "../mesh/client";
import { benchTracer } from "./bench-tracer";
import { createLogger } from "../mesh/logger";
import { BENCH_PRODUCT_ID } from "./bench-catalog";
import { meshClientTls, plainChannelTls, tlsFilesFromFlags } from "./bench-tls";
import { flag, serveControl } from "./control-channel";
import { policyChannelOptions } from "./lb-policy";
import { ProcessProbe } from "./process-probe";
import type { ProcessSample } from "./process-probe";

/**
 * Entry point of a Node load client (B2, B2T): `--kind plain|mesh|metrics|tracing|plain-tls|mesh-tls
 * --target <grpc target> [--policy <lb>]` (`--ca --cert --key` with the -tls kinds).
 * - plain: ts-proto's CatalogServiceClient on grpc-js with no options, as a grpc-js user writes it;
 * - mesh: protomesh's createClient (deadline and log interceptors, the production log level), with
 *   the load-balancing policy named by --policy in its service config, or none (pick_first);
 * - plain-tls: plain with grpc-js' own mTLS credentials (credentials.createSsl, bench-tls.ts);
 * - mesh-tls: mesh with createClient's `tls` option, the same files (B2T).
 * The harness starts it on the load core and sends `run` with a closed-loop load.
 */

/** A closed loop: `concurrency` callers each issue GetProduct back to back. */
export interface ClientLoad {
  concurrency: number;
  warmUpMs: number;
  durationMs: number;
  /** Upper bound on measured calls, whatever the duration (smoke runs). */
  maxCalls: number;
}

/** What one `run` measured (after the warm-up). */
export interface ClientResult {
  calls: number;
  errors: number;
  callsPerSecond: number;
  p50Us: number;
  p99Us: number;
  p999Us: number;
  process: ProcessSample;
}

/** The kinds of client this entry point runs. */
export const CLIENT_KINDS = ["plain", "mesh", "metrics", "tracing", "plain-tls", "mesh-tls"] as const;
export type ClientKind = (typeof CLIENT_KINDS)[number];

function makeClient(kind: ClientKind, target: string, policy: string): CatalogServiceClient {
  if (kind === "plain") return new CatalogServiceClient(target, credentials.createInsecure());
  if (kind === "plain-tls") {
    const tls = plainChannelTls(tlsFilesFromFlags());
    return new CatalogServiceClient(target, tls.credentials, tls.options);
  }
  return createClient(CatalogServiceClient, target, {
    logger: createLogger({ name: "bench-client" }),
    channelOptions: policy === "" ? {} : policyChannelOptions(policy),
    // metrics: the same client with its Prometheus metrics counted (a registry of its own).
    metrics: kind === "metrics" ? new Registry() : undefined,
    // tracing: a span per call (bench-tracer.ts drops the batches).
    tracer: kind === "tracing" ? benchTracer() : undefined,
    tls: kind === "mesh-tls" ? meshClientTls(tlsFilesFromFlags()) : undefined,
  });
}

async function runLoad(client: CatalogServiceClient, load: ClientLoad, probe: ProcessProbe): Promise<ClientResult> {
  const latency = createHistogram();
  let isMeasuring = false;
  let calls = 0;
  let errors = 0;
  const callOnce = () =>
    new Promise<void>((resolve) => {
      const startedAt = process.hrtime.bigint();
      client.getProduct({ id: BENCH_PRODUCT_ID }, (error) => {
        if (isMeasuring) {
          calls += 1;
          if (error) errors += 1;
          else latency.record(Math.max(1, Number(process.hrtime.bigint() - startedAt)));
        }
        resolve();
      });
    });
  const loop = async (until: () => boolean) => {
    await Promise.all(
      Array.from({ length: load.concurrency }, async () => {
        while (!until()) await callOnce();
      }),
    );
  };
  const warmUpEnd = performance.now() + load.warmUpMs;
  await loop(() => performance.now() >= warmUpEnd);
  isMeasuring = true;
  probe.mark();
  const startedAt = performance.now();
  const end = startedAt + load.durationMs;
  await loop(() => performance.now() >= end || calls >= load.maxCalls);
  const elapsedS = (performance.now() - startedAt) / 1000;
  const sample = probe.read();
  isMeasuring = false;
  const us = (percentile: number) => (latency.count > 0 ? latency.percentile(percentile) / 1000 : 0);
  return {
    calls,
    errors,
    callsPerSecond: calls / elapsedS,
    p50Us: us(50),
    p99Us: us(99),
    p999Us: us(99.9),
    process: sample,
  };
}

function main(): void {
  const kind = flag("kind") as ClientKind;
  if (!CLIENT_KINDS.includes(kind)) throw new Error(`bench client: --kind must be one of ${CLIENT_KINDS.join(", ")}`);
  const client = makeClient(kind, flag("target"), flag("policy", ""));
  const probe = new ProcessProbe();
  serveControl(
    {
      run: (args) => runLoad(client, args as ClientLoad, probe),
      stop: () => {
        client.close();
        probe.close();
        setImmediate(() => process.exit(0));
      },
    },
    {},
  );
}

main();

import { Metadata, credentials } from "@grpc/grpc-js";
import type { ServiceError } from "@grpc/grpc-js";
import { CatalogServiceClient } from "../generated/ts/shop/catalog/v1/catalog";
import { createClient } from "../mesh/client";
import { createLogger } from "../mesh/logger";
import { BENCH_PRODUCT_ID } from "./bench-catalog";
import { KEY_HEADER, epochMs } from "./call-record";
import type { CallRecord } from "./call-record";
import { flag, serveControl } from "./control-channel";
import { seededRandom } from "./latency-model";
import { policyChannelOptions } from "./lb-policy";
import { ProcessProbe } from "./process-probe";

/**
 * Entry point of an open-loop load client (B3, B4, B7): GetProduct at a fixed arrival rate, each
 * call with its own deadline, whatever the answers do (not closed-loop: a slow replica does not
 * slow the arrivals). Every call is recorded (call-record.ts).
 * - `--kind mesh --target NAME --control-plane HOST:PORT`: createClient dialling `xds:///NAME`;
 * - `--kind plain --target ipv4:127.0.0.1:A,127.0.0.1:B`: a plain grpc-js client with round_robin
 *   over that static list (the "without the mesh" baseline of B4).
 * IPC ops: begin (a load), served (answers per replica since a time), end (returns the records),
 * mark, sample, stop.
 */

/** One open-loop load. */
export interface OpenLoad {
  rateRps: number;
  deadlineMs: number;
  /** The loop stops by itself after this long or this many calls, whichever comes first. */
  maxDurationMs: number;
  maxCalls: number;
  /** Seed of the request keys (ring_hash's hash input). */
  seed: number;
  /** The replicas by address ("127.0.0.1:40123" → "r0"): a call's peer names the replica it went to. */
  replicas: Record<string, string>;
}

/** How often the loop wakes to issue the calls that are due (Node timers do not go below 1 ms). */
const TICK_MS = 1;
/** After `end`, how long past the deadline the loop waits for calls in flight. */
const STOP_GRACE_MS = 2_000;

class OpenLoop {
  readonly records: CallRecord[] = [];
  private inflight = 0;
  private issued = 0;
  private timer: NodeJS.Timeout | undefined;
  private limit: NodeJS.Timeout | undefined;
  private readonly startedAt = performance.now();
  private readonly random: () => number;

  constructor(
    private readonly client: CatalogServiceClient,
    private readonly load: OpenLoad,
  ) {
    this.random = seededRandom(load.seed);
    this.timer = setInterval(() => this.tick(), TICK_MS);
    this.limit = setTimeout(() => this.halt(), load.maxDurationMs);
  }

  /** Stops issuing calls, waits (bounded) for those in flight, and returns every record. */
  async stop(): Promise<CallRecord[]> {
    this.halt();
    const until = performance.now() + this.load.deadlineMs + STOP_GRACE_MS;
    while (this.inflight > 0 && performance.now() < until) await new Promise((resolve) => setTimeout(resolve, 10));
    return this.records;
  }

  private halt(): void {
    clearInterval(this.timer);
    clearTimeout(this.limit);
  }

  private tick(): void {
    const elapsedMs = performance.now() - this.startedAt;
    const due = Math.min(this.load.maxCalls, Math.floor((elapsedMs * this.load.rateRps) / 1000));
    while (this.issued < due) {
      const intendedAt = this.startedAt + (this.issued * 1000) / this.load.rateRps;
      this.issued += 1;
      this.issue(intendedAt);
    }
    if (this.issued >= this.load.maxCalls) this.halt();
  }

  private issue(intendedAt: number): void {
    const metadata = new Metadata();
    metadata.set(KEY_HEADER, `k${Math.floor(this.random() * 1e9)}`);
    const record: CallRecord = { t: epochMs(), ms: 0, code: -1, replica: "" };
    this.inflight += 1;
    const call = this.client.getProduct(
      { id: BENCH_PRODUCT_ID },
      metadata,
      { deadline: Date.now() + this.load.deadlineMs },
      (error: ServiceError | null) => {
        record.ms = performance.now() - intendedAt;
        record.code = error ? error.code : 0;
        record.replica = this.load.replicas[call.getPeer()] ?? "";
        this.records.push(record);
        this.inflight -= 1;
      },
    );
  }
}

function makeClient(kind: string, target: string): CatalogServiceClient {
  if (kind === "plain") {
    return new CatalogServiceClient(target, credentials.createInsecure(), policyChannelOptions("round_robin"));
  }
  if (kind !== "mesh") throw new Error("bench open-loop client: --kind must be plain or mesh");
  return createClient(CatalogServiceClient, target, {
    logger: createLogger({ name: "bench-open-loop" }),
    controlPlane: flag("control-plane"),
  });
}

function main(): void {
  const client = makeClient(flag("kind"), flag("target"));
  const probe = new ProcessProbe();
  let loop: OpenLoop | undefined;
  serveControl(
    {
      begin: (args) => {
        if (loop) throw new Error("a load is running already");
        loop = new OpenLoop(client, args as OpenLoad);
        return epochMs();
      },
      served: (args) => {
        const since = (args as { since: number }).since;
        const counts: Record<string, number> = {};
        for (const record of loop?.records ?? []) {
          if (record.t >= since && record.code === 0) counts[record.replica] = (counts[record.replica] ?? 0) + 1;
        }
        return counts;
      },
      end: async () => {
        const records = (await loop?.stop()) ?? [];
        loop = undefined;
        return records;
      },
      mark: () => probe.mark(),
      sample: () => probe.read(),
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

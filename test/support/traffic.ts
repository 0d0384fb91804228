import { Metadata, status } from "@grpc/grpc-js";
import type { ClientUnaryCall, ServiceError } from "@grpc/grpc-js";
import { seededRandom } from "../../bench/latency-model";
import type { CatalogServiceClient } from "../../generated/ts/shop/catalog/v1/catalog";
import { previousAttemptsOf } from "../../mesh/observer-client";

/**
 * Continuous GetProduct traffic for chaos tests: `concurrency` loops, each making one call at a
 * time (then pausing for a seeded random 0 to 2 × `pauseMs`, so that loops whose calls take alike
 * do not fall into step and leave moments with no call in flight), every call with a deadline, every call counted with its outcome,
 * the endpoint that served it (grpc-js's peer of the attempt that was committed) and how many
 * attempts grpc-js made (gRFC A6's grpc-previous-rpc-attempts). Windows of calls are taken by
 * issue time: "the calls issued in the 2 s after the kill".
 */


/** One call. */
export interface CallOutcome {
  /** When it was issued and when its status came (ms since the epoch). */
  startedAt: number;
  endedAt: number;
  /** gRPC status code (0 = OK). */
  code: status;
  details: string;
  /** The endpoint that answered ("127.0.0.1:40123"), or grpc-js's "unknown" when none did. */
  peer: string;
  /** Attempts made (1 when the first answered; gRFC A6 retries and transparent retries add to it). */
  attempts: number;
  /** True when response headers arrived: from then on grpc-js has committed the call and retries nothing (gRFC A6). */
  sawHeaders: boolean;
}

/** Options of {@link Traffic}. */
export interface TrafficOptions {
  /** Calls in flight at once (one per loop). */
  concurrency: number;
  /** Deadline of every call. */
  deadlineMs: number;
  /** Mean pause of a loop between its calls, so that fast replicas do not take every core. */
  pauseMs: number;
  /** Seed of the pauses (default 1). */
  seed?: number;
  /** The product asked for. */
  productId?: string;
  /**
   * The call each loop makes, in place of GetProduct(productId): it sends one call with `deadline`
   * (ms since the epoch) and hands its error (null when OK) to `done` (PlaceOrder traffic, say).
   */
  send?: (deadline: number, done: (error: ServiceError | null) => void) => ClientUnaryCall;
}

/** GetProduct calls in `concurrency` loops until `stop`. */
export class Traffic {
  readonly calls: CallOutcome[] = [];
  private isRunning = true;
  private running = 0;
  private readonly loops: Promise<void>[];
  private readonly random: () => number;

  constructor(
    private readonly client: CatalogServiceClient | undefined,
    private readonly options: TrafficOptions,
  ) {
    this.random = seededRandom(options.seed ?? 1);
    this.loops = Array.from({ length: options.concurrency }, () => this.loop());
  }

  /** Calls in flight now. */
  get inFlight(): number {
    return this.running;
  }

  /** Calls issued in [from, to). */
  issuedBetween(from: number, to = Infinity): CallOutcome[] {
    return this.calls.filter((call) => call.startedAt >= from && call.startedAt < to);
  }

  /** Resolves once `count` more calls have ended (bounded by `timeoutMs`). */
  async waitCalls(count: number, timeoutMs = 10_000): Promise<void> {
    const target = this.calls.length + count;
    const giveUpAt = Date.now() + timeoutMs;
    while (this.calls.length < target) {
      if (Date.now() > giveUpAt) throw new Error(`traffic: ${count} calls did not end within ${timeoutMs} ms`);
      await pause(10);
    }
  }

  /** Stops the loops and waits for the calls in flight (each ends by its deadline). */
  async stop(): Promise<void> {
    this.isRunning = false;
    await Promise.all(this.loops);
  }

  private async loop(): Promise<void> {
    while (this.isRunning) {
      this.running += 1;
      const outcome = await this.call();
      this.running -= 1;
      this.calls.push(outcome);
      if (this.options.pauseMs > 0) await pause(2 * this.options.pauseMs * this.random());
    }
  }

  private call(): Promise<CallOutcome> {
    const startedAt = Date.now();
    let previousAttempts = 0;
    let sawHeaders = false;
    const noteAttempts = (metadata: Metadata | undefined) => {
      previousAttempts = Math.max(previousAttempts, previousAttemptsOf(metadata));
    };
    const deadline = startedAt + this.options.deadlineMs;
    const send =
      this.options.send ??
      ((callDeadline: number, done: (error: ServiceError | null) => void) =>
        this.client!.getProduct({ id: this.options.productId ?? "sku-1001" }, new Metadata(), { deadline: callDeadline }, done));
    return new Promise((resolve) => {
      const call = send(deadline, (error: ServiceError | null) => {
        noteAttempts(error?.metadata);
        resolve({
          startedAt,
          endedAt: Date.now(),
          code: error ? error.code : status.OK,
          details: error?.details ?? "",
          peer: call.getPeer(),
          attempts: previousAttempts + 1,
          sawHeaders,
        });
      });
      call.on("metadata", (headers: Metadata) => {
        sawHeaders = true;
        noteAttempts(headers);
      });
    });
  }
}

function pause(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** The calls that did not end OK. */
export function failures(calls: readonly CallOutcome[]): CallOutcome[] {
  return calls.filter((call) => call.code !== status.OK);
}

/**
 * The failed calls that gRPC's rules let no client save: the ones `endpoint` had begun answering
 * (response headers received, so grpc-js committed them, gRFC A6) when it died at `diedAt`, and
 * that then ended UNAVAILABLE. A replica that dies between writing a response's headers and its
 * trailers leaves such a call; grpc-js writes the two in separate turns of the event loop.
 */
export function committedToDead(calls: readonly CallOutcome[], endpoint: string, diedAt: number): CallOutcome[] {
  return failures(calls).filter(
    (call) => call.code === status.UNAVAILABLE && call.sawHeaders && call.peer === endpoint && call.startedAt <= diedAt,
  );
}

/** How many of `calls` each key has ("r0" → 120). */
export function countBy(calls: readonly CallOutcome[], key: (call: CallOutcome) => string): Record<string, number> {
  const counts: Record<string, number> = {};
  for (const call of calls) counts[key(call)] = (counts[key(call)] ?? 0) + 1;
  return counts;
}

/** A one-line account of `calls` for assertion messages: count, codes, replicas, retried, slowest. */
export function describeCalls(calls: readonly CallOutcome[], replicaOf: (peer: string) => string): string {
  const codes = countBy(calls, (call) => status[call.code] ?? String(call.code));
  const replicas = countBy(calls, (call) => replicaOf(call.peer));
  const retried = calls.filter((call) => call.attempts > 1).length;
  const slowest = Math.max(0, ...calls.map((call) => call.endedAt - call.startedAt));
  const failed = failures(calls)
    .slice(0, 5)
    .map((call) => `${status[call.code]} "${call.details}" from ${replicaOf(call.peer)}${call.sawHeaders ? " after its headers" : ""}`);
  return (
    `${calls.length} calls; codes ${JSON.stringify(codes)}; served by ${JSON.stringify(replicas)}; ` +
    `${retried} retried; slowest ${slowest} ms${failed.length > 0 ? `; failures: ${failed.join(", ")}` : ""}`
  );
}

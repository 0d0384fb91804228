import type { Span } from "@opentelemetry/api";
import { AsyncLocalStorage } from "node:async_hooks";
import type { CallOptions, Deadline, Metadata } from "@grpc/grpc-js";

/** A grpc-js deadline (a Date or ms since the epoch; Infinity for none) in ms since the epoch. */
export function deadlineMs(deadline: Deadline): number {
  return deadline instanceof Date ? deadline.getTime() : deadline;
}

/** A grpc-js server call of any kind, as an outbound call's `parent` takes it. */
export type ServerSurfaceCall = NonNullable<CallOptions["parent"]>;

/**
 * The inbound call a handler is serving, carried by AsyncLocalStorage through everything the
 * handler awaits, so that an outbound call made while handling it inherits its deadline, its
 * cancellation and its request id without the handler passing anything (deadlines.ts,
 * observer-client.ts). It also keeps the account of
 * the call's budget that the server's log line shows when the call ends DEADLINE_EXCEEDED.
 */
export class InboundCall {
  /** The grpc-js call, given to grpc-js as an outbound call's `parent` (deadline and cancellation). */
  surface: ServerSurfaceCall | undefined;
  /** When the call arrived (Date.now ms). */
  readonly receivedAt: number;
  /** The caller's deadline (Date.now ms), Infinity when it sent none. */
  readonly deadline: number;
  /** The call's request id, which outbound calls made while handling it carry on (observer-client.ts). */
  requestId = "";
  /** The call's server span when the server traces (tracing.ts): the parent of the outbound calls' spans. */
  span: Span | undefined;
  /**
   * "active" while the handler works; "answered" once its status is sent: work it left behind (a
   * timer, a background task) is then on its own; "cancelled" once the caller cancelled it or its
   * deadline passed: outbound calls still made for it fail unsent.
   */
  state: "active" | "answered" | "cancelled" = "active";
  /** Outbound calls in flight now, and since when one has been (Date.now ms). */
  private outboundInFlight = 0;
  private outboundSince = 0;
  /** Wall time with at least one outbound call in flight (ms). */
  private downstreamMs = 0;
  /** The budget (ms) handed to the latest outbound call, and its method; undefined before one. */
  private lastHandedMs: number | undefined;
  private lastHandedTo = "";

  constructor(receivedAt: number, deadline: Deadline) {
    this.receivedAt = receivedAt;
    this.deadline = deadlineMs(deadline);
  }

  /** Counts an outbound call that starts now with `budgetMs` to `path`; returns the function that ends it. */
  outboundStarted(path: string, budgetMs: number, now = Date.now()): () => void {
    if (this.outboundInFlight === 0) this.outboundSince = now;
    this.outboundInFlight += 1;
    this.lastHandedMs = budgetMs;
    this.lastHandedTo = path;
    let isEnded = false;
    return () => {
      if (isEnded) return;
      isEnded = true;
      this.outboundInFlight -= 1;
      if (this.outboundInFlight === 0) this.downstreamMs += Date.now() - this.outboundSince;
    };
  }

  /**
   * Where the budget went, for the log of a call that ran out of it: what the caller gave
   * (`receivedMs`), the time spent here with no outbound call in flight (`spentHereMs`), the wall
   * time waiting on outbound calls (`downstreamMs`), and the budget handed to the latest one
   * (`handedDownstreamMs`, to `handedTo`).
   */
  budget(now = Date.now()): DeadlineBudget {
    const downstreamMs = this.downstreamMs + (this.outboundInFlight > 0 ? now - this.outboundSince : 0);
    return {
      receivedMs: Number.isFinite(this.deadline) ? this.deadline - this.receivedAt : null,
      spentHereMs: now - this.receivedAt - downstreamMs,
      downstreamMs,
      ...(this.lastHandedMs !== undefined ? { handedDownstreamMs: this.lastHandedMs, handedTo: this.lastHandedTo } : {}),
    };
  }
}

/** The account of a call's deadline budget, as logged (ms). */
export interface DeadlineBudget {
  /** The budget the caller gave; null when it sent no deadline. */
  receivedMs: number | null;
  spentHereMs: number;
  downstreamMs: number;
  handedDownstreamMs?: number;
  handedTo?: string;
}

const storage = new AsyncLocalStorage<InboundCall>();
/**
 * Whether handlers run inside their call's context: only once the process has made a mesh client
 * (createClient), since only a mesh client's calls read it. On Node 20 AsyncLocalStorage runs on
 * async_hooks, which slow every promise of the process once a store is entered (measured: B1
 * server throughput 0.64× plain grpc-js with it, 0.8× without; BENCHMARKS.md), so a server that
 * makes no outbound calls (the catalog) does not pay for it.
 */
let isPropagating = false;

/** Turns the context on for the calls handled from now on (createClient calls it). */
export function propagateInboundCalls(): void {
  isPropagating = true;
}

/** Whether handlers run inside their call's context (see propagateInboundCalls). */
export function isPropagatingInboundCalls(): boolean {
  return isPropagating;
}
/** The server's call observer opens the context; the handler guard finds it by the call's metadata. */
const byMetadata = new WeakMap<Metadata, InboundCall>();

/** Opens the context of an inbound call whose metadata is `metadata` (the server's call observer). */
export function openInboundCall(metadata: Metadata, receivedAt: number, deadline: Deadline, requestId: string): InboundCall {
  const inbound = new InboundCall(receivedAt, deadline);
  inbound.requestId = requestId;
  byMetadata.set(metadata, inbound);
  return inbound;
}

/**
 * Runs `handler` inside the context of the inbound call `surface` (the handler guard): the context
 * the observer opened for it, else a new one.
 */
export function runInInboundCall<T>(surface: ServerSurfaceCall, handler: () => T): T {
  if (!isPropagating) return handler();
  let inbound = byMetadata.get(surface.metadata);
  if (inbound === undefined) inbound = new InboundCall(Date.now(), surface.getDeadline());
  inbound.surface = surface;
  return storage.run(inbound, handler);
}

/** The inbound call being handled where this runs, unless it has been answered. */
export function currentInboundCall(): InboundCall | undefined {
  const inbound = storage.getStore();
  return inbound === undefined || inbound.state === "answered" ? undefined : inbound;
}

/**
 * Runs `fn` outside any inbound call: outbound calls it makes inherit no deadline and no
 * cancellation (work that must outlive the request that started it).
 */
export function detached<T>(fn: () => T): T {
  return storage.exit(fn);
}

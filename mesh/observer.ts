import type { status } from "@grpc/grpc-js";
import type { DeadlineBudget } from "./call-context";
import type { MethodPath } from "./method-path";

/**
 * What the call observers (observer-server.ts, observer-client.ts) measure of one call, once, and
 * hand to every sink: the per-call log line (sink-log.ts) today, metrics and traces later, each a
 * sink of its own.
 */

/** A method's kind, as go-grpc-prometheus names it in its grpc_type label. */
export type CallType = "unary" | "client_stream" | "server_stream" | "bidi_stream";

/** The kind of a method from its descriptor's two stream flags. */
export function callTypeOf(descriptor: { readonly requestStream: boolean; readonly responseStream: boolean }): CallType {
  if (descriptor.requestStream) return descriptor.responseStream ? "bidi_stream" : "client_stream";
  return descriptor.responseStream ? "server_stream" : "unary";
}

/** A call as it starts. */
export interface CallStart {
  /** "server": a call this process serves; "client": one it makes. */
  readonly side: "server" | "client";
  /** The method, parsed once per method. */
  readonly method: MethodPath;
  /** Unary or which way it streams. */
  readonly type: CallType;
  /** The request id the call carries (x-request-id: the caller's, or one made for it). */
  readonly requestId: string;
}

/** A call as it ended. */
export interface CallRecord extends CallStart {
  readonly code: status;
  /** The status details; internal to the caller's log, never more than grpc-js sent or received. */
  readonly details: string;
  /** From the call's start to its status, in ms (µs precision). */
  readonly durationMs: number;
  /** server: the caller's address; client: the endpoint that answered (the target when none was picked). */
  readonly peer: string;
  /** server, for a call that ended DEADLINE_EXCEEDED: where its budget went (call-context.ts). */
  readonly budget?: DeadlineBudget;
  /** server: true when the load shedder refused the call before its handler (RESOURCE_EXHAUSTED). */
  readonly isShed?: boolean;
  /**
   * client, when a sink asked for it (`countsAttempts`): the attempts grpc-js made, 1 + its gRFC A6
   * `grpc-previous-rpc-attempts` (retries, or hedged attempts where the method hedges).
   */
  readonly attempts?: number;
}

/** A consumer of observed calls. Sinks must be cheap and never throw: they run on every call. */
export interface CallSink {
  /** Called once per call as it starts (server: its metadata arrived; client: it is being sent). */
  callStarted?(call: CallStart): void;
  /** Called exactly once per call as it ends: status sent or received, or the call cancelled. */
  callEnded(call: CallRecord): void;
  /**
   * Called for each message a streaming call receives (server: a request; client: a response), as
   * it arrives. Not for unary calls, whose messages are known from their start and end (one
   * request; one response when OK) and are not intercepted: that is most calls, and intercepting
   * their messages costs more than counting them. The observers intercept a streaming call's
   * messages only when a sink has this or `messageSent`.
   */
  messageReceived?(call: CallStart): void;
  /** Called for each message a streaming call sends, as it goes out. */
  messageSent?(call: CallStart): void;
  /** True when the client's records must carry `attempts` (the observer then reads the response headers too). */
  readonly countsAttempts?: boolean;
}

/** Milliseconds between two performance.now() readings, rounded to the microsecond. */
export function elapsedMs(startedAt: number, endedAt = performance.now()): number {
  return Math.round((endedAt - startedAt) * 1000) / 1000;
}

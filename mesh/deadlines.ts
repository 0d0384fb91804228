import { InterceptingCall, Metadata, status } from "@grpc/grpc-js";
import type { CallInvocationTransformer, Deadline, InterceptingListener, StatusObject } from "@grpc/grpc-js";
import { currentInboundCall, deadlineMs } from "./call-context";
import type { InboundCall } from "./call-context";
import { methodOf } from "./method-path";

/** Deadline of an outbound call when neither the caller nor the method's configuration names one. */
export const DEFAULT_DEADLINE_MS = 5_000;
/**
 * How much of an inbound call's remaining budget an outbound call made while handling it leaves
 * unused (ms): the time this hop needs to turn the downstream answer into its own, and for that
 * answer to travel back, so that a downstream call that uses its whole budget still leaves this
 * hop time to answer before its own caller gives up.
 */
export const DEFAULT_DEADLINE_MARGIN_MS = 10;

/** Per-method deadline configuration of a client. */
export interface DeadlinePolicy {
  /** Applied to every method without its own entry. */
  defaultMs: number;
  /** Keyed by method name ("GetProduct") or full path ("/shop.catalog.v1.CatalogService/GetProduct"). */
  methodsMs: Readonly<Record<string, number>>;
  /** What an outbound call leaves of the inbound call's remaining budget (ms); see DEFAULT_DEADLINE_MARGIN_MS. */
  marginMs: number;
}

/** Validates a deadline policy; the error names the field. */
export function deadlinePolicy(
  config: { defaultMs?: number; methodsMs?: Record<string, number>; marginMs?: number } = {},
): DeadlinePolicy {
  const defaultMs = config.defaultMs ?? DEFAULT_DEADLINE_MS;
  assertPositiveMs("deadlines.defaultMs", defaultMs);
  const methodsMs = { ...(config.methodsMs ?? {}) };
  for (const [method, ms] of Object.entries(methodsMs)) assertPositiveMs(`deadlines.methodsMs["${method}"]`, ms);
  const marginMs = config.marginMs ?? DEFAULT_DEADLINE_MARGIN_MS;
  if (typeof marginMs !== "number" || !Number.isFinite(marginMs) || marginMs < 0) {
    throw new TypeError(`deadlines.marginMs must be a finite number of milliseconds >= 0, got ${String(marginMs)}`);
  }
  return { defaultMs, methodsMs, marginMs };
}

function assertPositiveMs(field: string, value: unknown): void {
  // A deadline is never infinite: refuse 0, negatives, Infinity and non-numbers alike.
  if (typeof value !== "number" || !Number.isFinite(value) || value <= 0) {
    throw new TypeError(`${field} must be a finite number of milliseconds > 0, got ${String(value)}`);
  }
}

/** Each policy's timeout per path, worked out on the path's first call. */
const timeoutsByPolicy = new WeakMap<DeadlinePolicy, Map<string, number>>();

/** The timeout in ms the policy gives the method at `path`, looked up once per policy and path. */
export function timeoutFor(policy: DeadlinePolicy, path: string): number {
  let timeouts = timeoutsByPolicy.get(policy);
  if (timeouts === undefined) {
    timeouts = new Map();
    timeoutsByPolicy.set(policy, timeouts);
  }
  let timeoutMs = timeouts.get(path);
  if (timeoutMs === undefined) {
    timeoutMs = policy.methodsMs[path] ?? policy.methodsMs[methodOf(path).method] ?? policy.defaultMs;
    timeouts.set(path, timeoutMs);
  }
  return timeoutMs;
}

/**
 * The absolute deadline (Date.now ms) of an outbound call: the caller's own when given, otherwise
 * now + the policy's timeout for the method; made no later than `inboundDeadline` − the margin
 * when the call is made while handling an inbound call (so an explicit shorter deadline wins, and
 * a longer one is cut to the budget that is left).
 */
export function resolveDeadline(
  policy: DeadlinePolicy,
  path: string,
  explicit: Deadline | undefined,
  now: () => number = Date.now,
  inboundDeadline = Infinity,
): number {
  const own = explicit !== undefined && explicit !== Infinity ? deadlineMs(explicit) : now() + timeoutFor(policy, path);
  return Math.min(own, inboundDeadline - policy.marginMs);
}

/**
 * A grpc-js call invocation transformer that gives every call a deadline (resolveDeadline). A call
 * made while handling an inbound call (call-context.ts), with no `parent` of its own, gets the
 * inbound call as its grpc-js parent, so that cancelling the inbound call cancels it too. A
 * transformer rather than an interceptor: it runs once per call with no intercepting layer around
 * the call's events.
 */
export function deadlineTransformer(policy: DeadlinePolicy, now: () => number = Date.now): CallInvocationTransformer {
  return (properties) => {
    const { callOptions } = properties;
    const inbound = callOptions.parent === undefined ? currentInboundCall() : undefined;
    const path = properties.methodDefinition.path;
    if (inbound === undefined) {
      return { ...properties, callOptions: { ...callOptions, deadline: resolveDeadline(policy, path, callOptions.deadline, now) } };
    }
    const deadline = resolveDeadline(policy, path, callOptions.deadline, now, inbound.deadline);
    return { ...properties, callOptions: { ...callOptions, deadline, parent: inbound.surface } };
  };
}

/**
 * What keeps deadlines honest at the moment a call is sent (the client's call observer asks it):
 * a call whose budget is already gone fails DEADLINE_EXCEEDED without being sent (no connection, no
 * pick, nothing on the wire), as does, CANCELLED, one made for an inbound call that was cancelled.
 * Returns the call that stands in for it, or undefined when the call may go.
 */
export function unsentCall(deadline: number, inbound: InboundCall | undefined, now: number): NextCallInterface | undefined {
  if (deadline <= now) {
    const spent = inbound ? "the inbound call's budget is spent" : "its deadline had passed";
    return new UnsentCall(status.DEADLINE_EXCEEDED, `deadline exceeded before the call was sent: ${spent}`);
  }
  if (inbound?.state === "cancelled") {
    return new UnsentCall(status.CANCELLED, "not sent: the inbound call it was made for was cancelled");
  }
  return undefined;
}

/** The call an interceptor hands on to (grpc-js does not export its interface by name). */
export type NextCallInterface = ConstructorParameters<typeof InterceptingCall>[0];

/** A call that is never sent: it ends with its status as soon as it is started. */
class UnsentCall implements NextCallInterface {
  private isEnded = false;
  constructor(
    private readonly code: status,
    private readonly details: string,
  ) {}

  start(_metadata: Metadata, listener?: Partial<InterceptingListener>): void {
    // Asynchronously, as a sent call's status always is, so a caller's code after the call runs first.
    process.nextTick(() => this.end(listener));
  }
  cancelWithStatus(): void {
    this.isEnded = true;
  }
  getPeer(): string {
    return "";
  }
  sendMessageWithContext(): void {}
  sendMessage(): void {}
  startRead(): void {}
  halfClose(): void {}
  getAuthContext(): null {
    return null;
  }

  private end(listener: Partial<InterceptingListener> | undefined): void {
    if (this.isEnded) return;
    this.isEnded = true;
    listener?.onReceiveStatus?.({ code: this.code, details: this.details, metadata: new Metadata() });
  }
}

/** What a call reset by its server at the deadline ends with (see {@link atDeadline}). */
export const RESET_AT_DEADLINE_DETAILS = "Deadline exceeded (the server reset the call at its deadline)";

/**
 * A call's status as the caller should see it: a server that resets the stream once its deadline
 * has passed (grpc-go does, RST_STREAM CANCEL) makes grpc-js end the call CANCELLED "Call
 * cancelled" when the reset is read before grpc-js's own deadline timer has run, which a busy event
 * loop allows. The call ran out of time, so it ends DEADLINE_EXCEEDED, as grpc-go's client says
 * too. Any other status, and a CANCELLED before the deadline, stay as they are.
 */
export function atDeadline(received: StatusObject, deadline: number, now: number): StatusObject {
  if (received.code !== status.CANCELLED || now < deadline) return received;
  return { ...received, code: status.DEADLINE_EXCEEDED, details: RESET_AT_DEADLINE_DETAILS };
}

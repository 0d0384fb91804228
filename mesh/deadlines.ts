import type { CallInvocationTransformer, Deadline } from "@grpc/grpc-js";
import { methodOf } from "./method-path";

/** Deadline of an outbound call when neither the caller nor the method's configuration names one. */
export const DEFAULT_DEADLINE_MS = 5_000;

/** Per-method deadline configuration of a client. */
export interface DeadlinePolicy {
  /** Applied to every method without its own entry. */
  defaultMs: number;
  /** Keyed by method name ("GetProduct") or full path ("/shop.catalog.v1.CatalogService/GetProduct"). */
  methodsMs: Readonly<Record<string, number>>;
}

/** Validates a deadline policy; the error names the field. */
export function deadlinePolicy(config: { defaultMs?: number; methodsMs?: Record<string, number> } = {}): DeadlinePolicy {
  const defaultMs = config.defaultMs ?? DEFAULT_DEADLINE_MS;
  assertPositiveMs("deadlines.defaultMs", defaultMs);
  const methodsMs = { ...(config.methodsMs ?? {}) };
  for (const [method, ms] of Object.entries(methodsMs)) assertPositiveMs(`deadlines.methodsMs["${method}"]`, ms);
  return { defaultMs, methodsMs };
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

/** The absolute deadline for a call: the caller's when given, otherwise now + the policy's timeout. */
export function resolveDeadline(
  policy: DeadlinePolicy,
  path: string,
  explicit: Deadline | undefined,
  now: () => number = Date.now,
): Deadline {
  if (explicit !== undefined && explicit !== Infinity) return explicit;
  return now() + timeoutFor(policy, path);
}

/**
 * A grpc-js call invocation transformer that gives every call a deadline: the caller's own,
 * otherwise the policy's for the method. With `parent` set (an inbound call), grpc-js then applies
 * the earlier of this deadline and the parent's remaining budget. A transformer rather than an
 * interceptor: it runs once per call with no intercepting layer around the call's events.
 */
export function deadlineTransformer(policy: DeadlinePolicy, now: () => number = Date.now): CallInvocationTransformer {
  return (properties) => {
    const deadline = resolveDeadline(policy, properties.methodDefinition.path, properties.callOptions.deadline, now);
    return { ...properties, callOptions: { ...properties.callOptions, deadline } };
  };
}

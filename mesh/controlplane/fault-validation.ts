import { status } from "@grpc/grpc-js";
import type { Abort, Delay, InjectFaultRequest } from "../../generated/ts/protomesh/fault/v1/fault";
import type { Duration } from "../../generated/ts/google/protobuf/duration";
import { invalidArgument } from "../errors";
import type { FaultAbort, FaultDelay, FaultSpec } from "./faults";
import { validateServiceName } from "./registry-validation";

/** How long a fault lasts when InjectFault names no ttl: long enough for an experiment, short enough to be forgotten. */
export const DEFAULT_FAULT_TTL_MS = 300_000;
/** Longest ttl: a longer experiment injects again before the fault ends. */
export const MAX_FAULT_TTL_MS = 3_600_000;
/** Longest delay: beyond any deadline the mesh sets (a delayed call still ends at its deadline). */
export const MAX_FAULT_DELAY_MS = 60_000;
/** Smallest share of calls, in percent: a millionth, the finest xDS FractionalPercent (MILLION). */
export const MIN_FAULT_PERCENT = 0.0001;

/**
 * A full gRPC method name as grpcurl and reflection write it, "package.Service/Method": proto
 * identifiers, the package optional. A route matches it as the path "/package.Service/Method".
 */
const METHOD_NAME_PATTERN = /^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*\/[A-Za-z_][A-Za-z0-9_]*$/;

/**
 * Checks an InjectFault request and returns what it asks for. Throws INVALID_ARGUMENT naming the
 * first bad field.
 *
 * A service the registry does not know is accepted: the control plane serves a Listener and a
 * RouteConfiguration for every valid name a client asks for, registered or not, so the fault
 * reaches clients waiting for a service that registers later (one being deployed, or restarting),
 * and injecting does not race a registration.
 */
export function validateInjectFault(request: InjectFaultRequest): FaultSpec {
  validateServiceName(request.service, "service");
  if (request.method !== "" && !METHOD_NAME_PATTERN.test(request.method)) {
    throw invalidArgument(
      "method",
      'must be empty (every method) or a full method name, package.Service/Method, such as "shop.catalog.v1.CatalogService/GetProduct"',
    );
  }
  if (!request.delay && !request.abort) {
    throw invalidArgument("delay", "required when abort is unset: a fault delays calls, aborts them, or both");
  }
  const ttlMs = request.ttl ? durationMs(request.ttl, "ttl") : 0;
  if (ttlMs < 0 || ttlMs > MAX_FAULT_TTL_MS) {
    throw invalidArgument("ttl", `must be from 0s to ${MAX_FAULT_TTL_MS / 1000}s (unset or 0 means ${DEFAULT_FAULT_TTL_MS / 1000}s)`);
  }
  return {
    service: request.service,
    method: request.method,
    delay: request.delay ? validateDelay(request.delay) : undefined,
    abort: request.abort ? validateAbort(request.abort) : undefined,
    ttlMs: ttlMs === 0 ? DEFAULT_FAULT_TTL_MS : ttlMs,
  };
}

function validateDelay(delay: Delay): FaultDelay {
  if (!delay.fixedDelay) throw invalidArgument("delay.fixed_delay", "required");
  const delayMs = durationMs(delay.fixedDelay, "delay.fixed_delay");
  if (!(delayMs > 0 && delayMs <= MAX_FAULT_DELAY_MS)) {
    throw invalidArgument("delay.fixed_delay", `must be more than 0s and at most ${MAX_FAULT_DELAY_MS / 1000}s`);
  }
  return { delayMs, percent: validatePercent(delay.percent, "delay.percent") };
}

function validateAbort(abort: Abort): FaultAbort {
  if (!Number.isInteger(abort.code) || abort.code < status.CANCELLED || abort.code > status.UNAUTHENTICATED) {
    throw invalidArgument("abort.code", "must be a gRPC status code from 1 (CANCELLED) to 16 (UNAUTHENTICATED); 0 (OK) is no fault");
  }
  return { code: abort.code, percent: validatePercent(abort.percent, "abort.percent") };
}

/** 0 (an unset field reads as 0) is refused: a fault that never fires is a mistake. */
function validatePercent(percent: number, field: string): number {
  if (!(percent >= MIN_FAULT_PERCENT && percent <= 100)) {
    throw invalidArgument(field, `must be a percentage from ${MIN_FAULT_PERCENT} to 100`);
  }
  return percent;
}

/** A google.protobuf.Duration in ms; one its spec calls invalid (nanos out of range, or of the other sign) is refused. */
function durationMs(duration: Duration, field: string): number {
  const { seconds, nanos } = duration;
  if (!Number.isInteger(seconds) || !Number.isInteger(nanos) || Math.abs(nanos) >= 1e9 || (seconds > 0 && nanos < 0) || (seconds < 0 && nanos > 0)) {
    throw invalidArgument(field, "must be a valid google.protobuf.Duration");
  }
  return seconds * 1000 + nanos / 1e6;
}

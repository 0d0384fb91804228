import type { IncomingHttpHeaders } from "node:http";
import { badRequest } from "./errors";
import type { GatewayError } from "./errors";

/** The documented HTTP header of a deadline for callers that do not speak gRPC's `grpc-timeout`. */
export const TIMEOUT_MS_HEADER = "x-timeout-ms";

// PROTOCOL-HTTP2.md: Timeout → "grpc-timeout" TimeoutValue TimeoutUnit; at most 8 digits.
const GRPC_TIMEOUT = /^(\d{1,8})([HMSmun])$/;
const UNIT_MS: Record<string, number> = { H: 3_600_000, M: 60_000, S: 1_000, m: 1, u: 1e-3, n: 1e-6 };
const TIMEOUT_MS = /^[1-9]\d{0,8}$/;

/**
 * The absolute deadline (Date.now ms) a request asks for: `grpc-timeout` ("2S", "500m", as gRPC
 * writes it) or else `x-timeout-ms` (a positive integer of milliseconds), undefined when neither is
 * sent; a malformed value is a 400 naming the header.
 */
export function requestDeadline(headers: IncomingHttpHeaders, now: number): number | GatewayError | undefined {
  const grpcTimeoutHeader = headers["grpc-timeout"];
  if (grpcTimeoutHeader !== undefined) {
    const grpcTimeout = Array.isArray(grpcTimeoutHeader) ? grpcTimeoutHeader.join(",") : grpcTimeoutHeader;
    const match = GRPC_TIMEOUT.exec(grpcTimeout);
    if (match === null) {
      return badRequest(`grpc-timeout: expected at most 8 digits and a unit (H, M, S, m, u, n), got ${JSON.stringify(grpcTimeout)}`);
    }
    return now + Number(match[1]) * UNIT_MS[match[2]];
  }
  const timeoutMs = headers[TIMEOUT_MS_HEADER];
  if (timeoutMs === undefined) return undefined;
  const text = Array.isArray(timeoutMs) ? timeoutMs.join(",") : timeoutMs;
  if (!TIMEOUT_MS.test(text)) return badRequest(`${TIMEOUT_MS_HEADER}: expected a positive integer of milliseconds, got ${JSON.stringify(text)}`);
  return now + Number(text);
}

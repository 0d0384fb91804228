import { status } from "@grpc/grpc-js";
import { isServerFailure } from "./errors";
import type { Logger } from "./logger";
import type { CallRecord, CallSink } from "./observer";

/**
 * Services every protomesh server hosts for the mesh's own use (health, reflection, ORCA load
 * reports): the control plane's probes and heartbeats call them every second on every endpoint, so
 * their calls log at debug, not info, unless they fail.
 */
export const MESH_SERVICES: ReadonlySet<string> = new Set([
  "grpc.health.v1.Health",
  "grpc.reflection.v1.ServerReflection",
  "grpc.reflection.v1alpha.ServerReflection",
  "xds.service.orca.v3.OpenRcaService",
]);

/**
 * The per-call log line, one per call when it ends, with the same field names on both sides and in
 * every language of the mesh: service, method, code, durationMs, peer, requestId. Caller mistakes
 * and successes log at info (the mesh's own services, MESH_SERVICES, at debug), server failures
 * (errors.ts isServerFailure) at warn with the details; a call that ran out of time says where its
 * budget went (`budget`: received, spent here, waited on downstream, handed downstream).
 * The logger passed in names the rest (the server, or the client's target).
 */
export function logSink(logger: Logger): CallSink {
  return {
    callEnded(call: CallRecord): void {
      const isFailure = isServerFailure(call.code);
      if (!isFailure && MESH_SERVICES.has(call.method.service) && !logger.isLevelEnabled("debug")) return;
      const line = {
        service: call.method.service,
        method: call.method.method,
        code: status[call.code] ?? String(call.code),
        durationMs: call.durationMs,
        peer: call.peer,
        requestId: call.requestId,
      };
      const isServer = call.side === "server";
      if (isFailure) {
        const fields = call.budget ? { ...line, details: call.details, budget: call.budget } : { ...line, details: call.details };
        logger.warn(fields, isServer ? "call failed" : "outbound call failed");
      } else if (MESH_SERVICES.has(call.method.service)) {
        logger.debug(line, isServer ? "call" : "outbound call");
      } else {
        logger.info(line, isServer ? "call" : "outbound call");
      }
    },
  };
}

import { status } from "@grpc/grpc-js";
import { isServerFailure } from "./errors";
import type { Logger } from "./logger";
import { MESH_SERVICES } from "./method-path";
import type { MethodPath } from "./method-path";
import type { CallRecord, CallSink } from "./observer";

/** Methods whose child logger is kept, per sink (a process serves and calls a fixed set: see method-path.ts). */
const MAX_LOGGED_METHODS = 1_024;

/** How one method's calls are logged: a child logger that carries its names, made on its first call. */
interface MethodLog {
  readonly logger: Logger;
  readonly isMeshService: boolean;
}

/**
 * The per-call log line, one per call when it ends, with the same field names on both sides and in
 * every language of the mesh: service, method, code, durationMs, peer, requestId. Caller mistakes
 * and successes log at info (the mesh's own services, MESH_SERVICES, at debug), server failures
 * (errors.ts isServerFailure) at warn with the details; a call that ran out of time says where its
 * budget went (`budget`: received, spent here, waited on downstream, handed downstream).
 * The logger passed in names the rest (the server, or the client's target). Each method gets a
 * child of it with its service and method, serialized once by pino rather than on every line.
 */
export function logSink(logger: Logger): CallSink {
  const methods = new Map<MethodPath, MethodLog>();
  const methodLog = (method: MethodPath): MethodLog => {
    let log = methods.get(method);
    if (log === undefined) {
      log = { logger: logger.child({ service: method.service, method: method.method }), isMeshService: MESH_SERVICES.has(method.service) };
      if (methods.size < MAX_LOGGED_METHODS) methods.set(method, log);
    }
    return log;
  };
  return {
    callEnded(call: CallRecord): void {
      const log = methodLog(call.method);
      const isFailure = isServerFailure(call.code);
      if (!isFailure && log.isMeshService && !log.logger.isLevelEnabled("debug")) return;
      const line = {
        code: status[call.code] ?? String(call.code),
        durationMs: call.durationMs,
        peer: call.peer,
        requestId: call.requestId,
      };
      const isServer = call.side === "server";
      if (isFailure) {
        const fields = call.budget ? { ...line, details: call.details, budget: call.budget } : { ...line, details: call.details };
        log.logger.warn(fields, isServer ? "call failed" : "outbound call failed");
      } else if (log.isMeshService) {
        log.logger.debug(line, isServer ? "call" : "outbound call");
      } else {
        log.logger.info(line, isServer ? "call" : "outbound call");
      }
    },
  };
}

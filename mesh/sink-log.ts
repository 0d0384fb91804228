import { status } from "@grpc/grpc-js";
import { isServerFailure } from "./errors";
import type { Logger } from "./logger";
import type { CallRecord, CallSink } from "./observer";

/**
 * The per-call log line, one per call when it ends, with the same field names on both sides and in
 * every language of the mesh: service, method, code, durationMs, peer, requestId. Caller mistakes
 * and successes log at info, server failures (errors.ts isServerFailure) at warn with the details;
 * a call that ran out of time says where its budget went (`budget`: received, spent here, waited
 * on downstream, handed downstream).
 * The logger passed in names the rest (the server, or the client's target).
 */
export function logSink(logger: Logger): CallSink {
  return {
    callEnded(call: CallRecord): void {
      const line = {
        service: call.method.service,
        method: call.method.method,
        code: status[call.code] ?? String(call.code),
        durationMs: call.durationMs,
        peer: call.peer,
        requestId: call.requestId,
      };
      const isServer = call.side === "server";
      if (isServerFailure(call.code)) {
        const fields = call.budget ? { ...line, details: call.details, budget: call.budget } : { ...line, details: call.details };
        logger.warn(fields, isServer ? "call failed" : "outbound call failed");
      } else {
        logger.info(line, isServer ? "call" : "outbound call");
      }
    },
  };
}

import { InterceptingCall, status } from "@grpc/grpc-js";
import type { Interceptor } from "@grpc/grpc-js";
import type { Logger } from "./logger";
import { isServerFailure } from "./errors";
import { REQUEST_ID_KEY, requestIdFrom } from "./request-id";
import { splitPath } from "./method-path";

/**
 * Client interceptor that sends an `x-request-id` (the caller's, or a new one) and writes one
 * structured line per call when it ends: service, method, code, duration, request id (the
 * logger passed in carries the target).
 */
export function clientLogInterceptor(logger: Logger): Interceptor {
  return (options, nextCall) => {
    const { service, method } = splitPath(options.method_definition.path);
    const startedAt = performance.now();
    let requestId = "";
    return new InterceptingCall(nextCall(options), {
      start: (metadata, _listener, next) => {
        requestId = requestIdFrom(metadata);
        metadata.set(REQUEST_ID_KEY, requestId);
        next(metadata, {
          onReceiveStatus: (callStatus, nextStatus) => {
            const line = {
              service,
              method,
              code: status[callStatus.code] ?? String(callStatus.code),
              durationMs: Math.round((performance.now() - startedAt) * 1000) / 1000,
              requestId,
            };
            if (isServerFailure(callStatus.code)) {
              logger.warn({ ...line, details: callStatus.details }, "outbound call failed");
            } else {
              logger.info(line, "outbound call");
            }
            nextStatus(callStatus);
          },
        });
      },
    });
  };
}

import { ServerInterceptingCall, status } from "@grpc/grpc-js";
import type { ServerInterceptor } from "@grpc/grpc-js";
import type { Logger } from "./logger";
import { isServerFailure } from "./errors";
import { REQUEST_ID_KEY, requestIdFrom } from "./request-id";
import { splitPath } from "./method-path";

/**
 * Server interceptor that writes one structured line per call (service, method, code, duration,
 * peer, request id) when the call ends, and echoes the request id to the caller in the response
 * headers (or trailers, for a trailers-only response). The id is taken from `x-request-id` or made.
 */
export function accessLogInterceptor(logger: Logger): ServerInterceptor {
  return (methodDescriptor, call) => {
    const startedAt = performance.now();
    const { service, method } = splitPath(methodDescriptor.path);
    let requestId = "";
    let isLogged = false;
    let isMetadataSent = false;

    const log = (code: status, details: string | undefined) => {
      if (isLogged) return;
      isLogged = true;
      const line = {
        service,
        method,
        code: status[code] ?? String(code),
        durationMs: Math.round((performance.now() - startedAt) * 1000) / 1000,
        peer: call.getPeer(),
        requestId,
      };
      if (isServerFailure(code)) {
        logger.warn({ ...line, details }, "call failed");
      } else {
        logger.info(line, "call");
      }
    };

    return new ServerInterceptingCall(call, {
      start: (next) =>
        next({
          onReceiveMetadata: (metadata, nextMetadata) => {
            requestId = requestIdFrom(metadata);
            metadata.set(REQUEST_ID_KEY, requestId);
            nextMetadata(metadata);
          },
          onCancel: () => {
            const deadline = call.getDeadline();
            const isPastDeadline = deadline instanceof Date ? deadline.getTime() <= Date.now() : deadline <= Date.now();
            log(isPastDeadline ? status.DEADLINE_EXCEEDED : status.CANCELLED, "call ended before its status");
          },
        }),
      sendMetadata: (metadata, next) => {
        isMetadataSent = true;
        if (requestId) metadata.set(REQUEST_ID_KEY, requestId);
        next(metadata);
      },
      sendStatus: (callStatus, next) => {
        if (!isMetadataSent && requestId && callStatus.metadata) {
          callStatus.metadata.set(REQUEST_ID_KEY, requestId);
        }
        log(callStatus.code, callStatus.details);
        next(callStatus);
      },
    });
  };
}

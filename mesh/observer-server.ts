import { ServerInterceptingCall, status } from "@grpc/grpc-js";
import type { ServerInterceptor } from "@grpc/grpc-js";
import { InboundCall, deadlineMs, isPropagatingInboundCalls, openInboundCall } from "./call-context";
import { methodOf } from "./method-path";
import { elapsedMs } from "./observer";
import type { CallRecord, CallSink, CallStart } from "./observer";
import { REQUEST_ID_KEY, requestIdFrom } from "./request-id";

/**
 * The server's call observer: one interceptor that measures every call once (method, code,
 * duration, peer, request id) and hands it to `sinks`. It also carries the call's request id: taken
 * from `x-request-id` (or made), set on the metadata the handler sees, and echoed to the caller in
 * the response headers (in the trailers, for a trailers-only response). And it opens the call's
 * context (call-context.ts), whose budget account a DEADLINE_EXCEEDED record carries.
 */
export function serverObserver(sinks: readonly CallSink[]): ServerInterceptor {
  // Only sinks that want the start get one: no object is made per call for none.
  const startSinks = sinks.filter((sink) => sink.callStarted !== undefined);
  return (methodDescriptor, call) => {
    const startedAt = performance.now();
    const method = methodOf(methodDescriptor.path);
    let requestId = "";
    let isEnded = false;
    let isMetadataSent = false;
    let inbound: InboundCall | undefined;

    const end = (code: status, details: string) => {
      if (isEnded) return;
      isEnded = true;
      const record: CallRecord = {
        side: "server",
        method,
        requestId,
        code,
        details,
        durationMs: elapsedMs(startedAt),
        peer: call.getPeer(),
        // Outside a context (no outbound calls), the account of one made now: all of it spent here.
        ...(code === status.DEADLINE_EXCEEDED
          ? { budget: (inbound ?? new InboundCall(Date.now() - Math.round(performance.now() - startedAt), call.getDeadline())).budget() }
          : {}),
      };
      for (const sink of sinks) sink.callEnded(record);
    };

    return new ServerInterceptingCall(call, {
      start: (next) =>
        next({
          onReceiveMetadata: (metadata, nextMetadata) => {
            requestId = requestIdFrom(metadata);
            metadata.set(REQUEST_ID_KEY, requestId);
            // The context outbound calls read, in a process that makes them (call-context.ts).
            if (isPropagatingInboundCalls()) inbound = openInboundCall(metadata, Date.now(), call.getDeadline(), requestId);
            if (startSinks.length > 0) {
              const start: CallStart = { side: "server", method, requestId };
              for (const sink of startSinks) sink.callStarted!(start);
            }
            nextMetadata(metadata);
          },
          onCancel: () => {
            if (inbound?.state === "active") inbound.state = "cancelled";
            const deadline = call.getDeadline();
            const isPastDeadline = deadlineMs(deadline) <= Date.now();
            end(isPastDeadline ? status.DEADLINE_EXCEEDED : status.CANCELLED, "call ended before its status");
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
        if (inbound) inbound.state = "answered";
        end(callStatus.code, callStatus.details);
        next(callStatus);
      },
    });
  };
}

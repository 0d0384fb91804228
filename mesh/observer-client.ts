import { InterceptingCall } from "@grpc/grpc-js";
import type { Interceptor } from "@grpc/grpc-js";
import { methodOf } from "./method-path";
import { elapsedMs } from "./observer";
import type { CallSink, CallStart } from "./observer";
import { currentInboundCall } from "./call-context";
import { REQUEST_ID_KEY, requestIdFrom } from "./request-id";

/**
 * The client's call observer: one interceptor that sends every call with an `x-request-id` (the
 * caller's; else, for a call made while handling an inbound call, that call's; else a new one), measures it once (method, code, duration, the endpoint that answered,
 * request id) and hands it to `sinks` when its status arrives.
 */
export function clientObserver(sinks: readonly CallSink[]): Interceptor {
  // Only sinks that want the start get one: no object is made per call for none.
  const startSinks = sinks.filter((sink) => sink.callStarted !== undefined);
  return (options, nextCall) => {
    const method = methodOf(options.method_definition.path);
    const startedAt = performance.now();
    const call = nextCall(options);
    let requestId = "";
    const inheritedId = currentInboundCall()?.requestId;
    return new InterceptingCall(call, {
      start: (metadata, _listener, next) => {
        requestId = inheritedId && metadata.get(REQUEST_ID_KEY).length === 0 ? inheritedId : requestIdFrom(metadata);
        metadata.set(REQUEST_ID_KEY, requestId);
        if (startSinks.length > 0) {
          const start: CallStart = { side: "client", method, requestId };
          for (const sink of startSinks) sink.callStarted!(start);
        }
        next(metadata, {
          onReceiveStatus: (callStatus, nextStatus) => {
            const record = {
              side: "client" as const,
              method,
              requestId,
              code: callStatus.code,
              details: callStatus.details,
              durationMs: elapsedMs(startedAt),
              peer: call.getPeer(),
            };
            for (const sink of sinks) sink.callEnded(record);
            nextStatus(callStatus);
          },
        });
      },
    });
  };
}

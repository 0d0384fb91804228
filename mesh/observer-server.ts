import { Metadata, ServerInterceptingCall, status } from "@grpc/grpc-js";
import type { ServerInterceptor } from "@grpc/grpc-js";
import type { Span, Tracer } from "@opentelemetry/api";
import { InboundCall, deadlineMs, isPropagatingInboundCalls, openInboundCall } from "./call-context";
import type { InflightTracker } from "./interceptor-inflight";
import { LOAD_REPORT_TRAILER } from "./load-report";
import type { LoadMeter } from "./load-report";
import { MESH_SERVICES, methodOf } from "./method-path";
import { callTypeOf, elapsedMs } from "./observer";
import type { CallRecord, CallSink, CallStart } from "./observer";
import { REQUEST_ID_KEY, requestIdFrom } from "./request-id";
import { endSpan, startServerSpan } from "./tracing";

/** What a server's call observer does besides observing; each part is left out when not given. */
export interface ServerCallDuties {
  /** Counts each call in flight, and asks the load shedder to admit it as its metadata arrives. */
  readonly inflight?: InflightTracker;
  /** Puts this meter's last window in every call's trailers: the per-call ORCA report (load-report.ts). */
  readonly loadReport?: LoadMeter;
  /** Makes a server span per call, the child of the traceparent it carries (tracing.ts). */
  readonly tracer?: Tracer;
}

/**
 * The server's call observer: the one interceptor of a MeshServer, so that a call passes through
 * one intercepting layer however much the server does with it. It measures every call once
 * (method, code, duration, peer, request id) and hands it to `sinks`. It carries the call's
 * request id: taken from `x-request-id` (or made), set on the metadata the handler sees, and echoed
 * to the caller in the response headers (in the trailers, for a trailers-only response). It opens
 * the call's context (call-context.ts), whose budget account a DEADLINE_EXCEEDED record carries.
 * And it does the server's `duties`: the in-flight count and load shedding (a shed call is answered
 * RESOURCE_EXHAUSTED before the handler and the interceptors after this one see it), and the
 * per-call ORCA trailer.
 */
export function serverObserver(sinks: readonly CallSink[], duties: ServerCallDuties = {}): ServerInterceptor {
  // Only sinks that want the start get one: no object is made per call for none.
  const startSinks = sinks.filter((sink) => sink.callStarted !== undefined);
  const receivedSinks = sinks.filter((sink) => sink.messageReceived !== undefined);
  const sentSinks = sinks.filter((sink) => sink.messageSent !== undefined);
  const { inflight, loadReport, tracer } = duties;
  return (methodDescriptor, call) => {
    const startedAt = performance.now();
    const method = methodOf(methodDescriptor.path);
    const type = callTypeOf(methodDescriptor);
    let start: CallStart | undefined;
    const tracked = inflight?.method(methodDescriptor.path);
    let requestId = "";
    let isEnded = false;
    let isMetadataSent = false;
    let isAdmitted = false;
    let isShed = false;
    let inbound: InboundCall | undefined;
    let span: Span | undefined;

    const end = (code: status, details: string) => {
      if (isEnded) return;
      isEnded = true;
      if (tracked !== undefined) {
        if (isAdmitted) tracked.shedder!.release();
        inflight!.leave(tracked, intercepting);
      }
      const record: CallRecord = {
        side: "server",
        method,
        type,
        requestId,
        code,
        details,
        durationMs: elapsedMs(startedAt),
        peer: call.getPeer(),
        // Outside a context (no outbound calls), the account of one made now: all of it spent here.
        ...(code === status.DEADLINE_EXCEEDED
          ? { budget: (inbound ?? new InboundCall(Date.now() - Math.round(performance.now() - startedAt), call.getDeadline())).budget() }
          : {}),
        isShed,
      };
      for (const sink of sinks) sink.callEnded(record);
      if (span !== undefined) endSpan(span, code, details);
    };

    const intercepting: ServerInterceptingCall = new ServerInterceptingCall(call, {
      start: (next) =>
        next({
          onReceiveMetadata: (metadata, nextMetadata) => {
            const sent = metadata.get(REQUEST_ID_KEY);
            requestId = requestIdFrom(metadata);
            if (sent.length !== 1 || sent[0] !== requestId) metadata.set(REQUEST_ID_KEY, requestId);
            if (tracer !== undefined && !MESH_SERVICES.has(method.service)) span = startServerSpan(tracer, method, metadata);
            if (tracked?.shedder !== undefined) {
              if (!tracked.shedder.tryAdmit()) {
                isShed = true;
                intercepting.sendStatus(tracked.shedder.shedStatus());
                return;
              }
              isAdmitted = true;
            }
            // The context outbound calls read, in a process that makes them (call-context.ts).
            if (isPropagatingInboundCalls()) {
              inbound = openInboundCall(metadata, Date.now(), call.getDeadline(), requestId);
              inbound.span = span;
            }
            if (startSinks.length > 0 || receivedSinks.length > 0 || sentSinks.length > 0) {
              start = { side: "server", method, type, requestId };
              for (const sink of startSinks) sink.callStarted!(start);
            }
            nextMetadata(metadata);
          },
          ...(receivedSinks.length > 0 && type !== "unary"
            ? {
                onReceiveMessage: (message: unknown, nextMessage: (message: unknown) => void) => {
                  if (start !== undefined) for (const sink of receivedSinks) sink.messageReceived!(start);
                  nextMessage(message);
                },
              }
            : {}),
          onCancel: () => {
            if (inbound?.state === "active") inbound.state = "cancelled";
            const isPastDeadline = deadlineMs(call.getDeadline()) <= Date.now();
            end(isPastDeadline ? status.DEADLINE_EXCEEDED : status.CANCELLED, "call ended before its status");
          },
        }),
      ...(sentSinks.length > 0 && type !== "unary"
        ? {
            sendMessage: (message: unknown, next: (message: unknown) => void) => {
              if (start !== undefined) for (const sink of sentSinks) sink.messageSent!(start);
              next(message);
            },
          }
        : {}),
      sendMetadata: (metadata, next) => {
        isMetadataSent = true;
        if (requestId) metadata.set(REQUEST_ID_KEY, requestId);
        next(metadata);
      },
      sendStatus: (callStatus, next) => {
        let sent = callStatus;
        if (loadReport !== undefined || (!isMetadataSent && requestId)) {
          const trailers = callStatus.metadata ?? new Metadata();
          if (!isMetadataSent && requestId) trailers.set(REQUEST_ID_KEY, requestId);
          if (loadReport !== undefined) trailers.set(LOAD_REPORT_TRAILER, loadReport.encodedFigures);
          if (trailers !== callStatus.metadata) sent = { ...callStatus, metadata: trailers };
        }
        if (inbound) inbound.state = "answered";
        // The status goes first: the line (and every sink) is not on the caller's critical path.
        next(sent);
        end(callStatus.code, callStatus.details);
      },
    });
    inflight?.enter(tracked!, intercepting);
    return intercepting;
  };
}

import { InterceptingCall, status } from "@grpc/grpc-js";
import type { Interceptor, Metadata } from "@grpc/grpc-js";
import type { Span, Tracer } from "@opentelemetry/api";
import { currentInboundCall, deadlineMs } from "./call-context";
import { atDeadline, unsentCall } from "./deadlines";
import { MESH_SERVICES, methodOf } from "./method-path";
import { callTypeOf, elapsedMs } from "./observer";
import type { CallRecord, CallSink, CallStart } from "./observer";
import { REQUEST_ID_KEY, requestIdFrom } from "./request-id";
import { endSpan, startClientSpan } from "./tracing";

/**
 * What grpc-js-xds' balancers answer a call when the control plane lists no healthy endpoint for
 * the service (every endpoint UNHEALTHY, or none registered): its priority policy is left with
 * nothing to pick from.
 */
const NO_ENDPOINT_DETAILS: ReadonlySet<string> = new Set(["priority policy has empty priority list"]);

/** gRFC A6: grpc-js sets it on a retried call's response headers, or on its status when none came. */
export const PREVIOUS_ATTEMPTS_KEY = "grpc-previous-rpc-attempts";

/** The attempts grpc-js made before the one whose headers or trailers are `metadata` (0 when none). */
export function previousAttemptsOf(metadata: Metadata | undefined): number {
  const value = metadata?.get(PREVIOUS_ATTEMPTS_KEY) ?? [];
  return value.length === 0 ? 0 : Number(value[0]) || 0;
}

/** What a client's call observer does besides observing. */
export interface ClientCallDuties {
  /**
   * The mesh service a channel dials over xDS: a call that failed because the service has no
   * healthy endpoint ends UNAVAILABLE with `<service>: no healthy endpoint`, the mesh's own words
   * (ARCHITECTURE.md), instead of the balancer's internals.
   */
  readonly meshService?: string;
  /** Makes a client span per call, the child of the inbound call's span, its traceparent sent along (tracing.ts). */
  readonly tracer?: Tracer;
}

/**
 * The client's call observer: the one protomesh interceptor of a mesh client, so that a call
 * passes through one intercepting layer. It sends every call with an `x-request-id` (the
 * caller's; else, for a call made while handling an inbound call, that call's; else a new one),
 * measures it once (method, code, duration, the endpoint that answered, request id) and hands it to
 * `sinks` when its status arrives. It keeps deadlines honest as the call is sent (deadlines.ts
 * `unsentCall`: a call whose budget is gone ends unsent), counts a call made while handling an
 * inbound call in that call's budget account (call-context.ts), and words a mesh service's "no
 * endpoint" in the mesh's terms (`duties.meshService`). The deadline itself is set before, by the
 * client's call invocation transformer.
 */
export function clientObserver(sinks: readonly CallSink[], duties: ClientCallDuties = {}): Interceptor {
  // Only sinks that want the start get one: no object is made per call for none.
  const startSinks = sinks.filter((sink) => sink.callStarted !== undefined);
  const receivedSinks = sinks.filter((sink) => sink.messageReceived !== undefined);
  const sentSinks = sinks.filter((sink) => sink.messageSent !== undefined);
  const countsAttempts = sinks.some((sink) => sink.countsAttempts === true);
  const noEndpointDetails = duties.meshService === undefined ? undefined : `${duties.meshService}: no healthy endpoint`;
  const { tracer } = duties;
  return (options, nextCall) => {
    const path = options.method_definition.path;
    const method = methodOf(path);
    const type = callTypeOf(options.method_definition);
    const startedAt = performance.now();
    const inbound = currentInboundCall();
    const sentAt = Date.now();
    const deadline = options.deadline === undefined ? Infinity : deadlineMs(options.deadline);
    const unsent = unsentCall(deadline, inbound, sentAt);
    const call = unsent ?? nextCall(options);
    const outboundEnded = unsent === undefined && inbound !== undefined ? inbound.outboundStarted(path, deadline - sentAt, sentAt) : undefined;
    let requestId = "";
    let start: CallStart | undefined;
    let span: Span | undefined;
    let retries = 0;
    return new InterceptingCall(call, {
      ...(sentSinks.length > 0 && type !== "unary"
        ? {
            sendMessage: (message: unknown, next: (message: unknown) => void) => {
              if (start !== undefined) for (const sink of sentSinks) sink.messageSent!(start);
              next(message);
            },
          }
        : {}),
      start: (metadata, _listener, next) => {
        const given = metadata.get(REQUEST_ID_KEY);
        requestId = inbound !== undefined && given.length === 0 ? inbound.requestId || requestIdFrom(metadata) : requestIdFrom(metadata);
        if (given.length !== 1 || given[0] !== requestId) metadata.set(REQUEST_ID_KEY, requestId);
        if (tracer !== undefined && !MESH_SERVICES.has(method.service)) span = startClientSpan(tracer, method, inbound?.span, metadata);
        if (startSinks.length > 0 || receivedSinks.length > 0 || sentSinks.length > 0) {
          start = { side: "client", method, type, requestId };
          for (const sink of startSinks) sink.callStarted!(start);
        }
        next(metadata, {
          ...(receivedSinks.length > 0 && type !== "unary"
            ? {
                onReceiveMessage: (message: unknown, nextMessage: (message: unknown) => void) => {
                  // grpc-js hands a unary call that got no message a null one before its status.
                  if (start !== undefined && message !== null) for (const sink of receivedSinks) sink.messageReceived!(start);
                  nextMessage(message);
                },
              }
            : {}),
          ...(countsAttempts
            ? {
                onReceiveMetadata: (metadata: Metadata, nextMetadata: (metadata: Metadata) => void) => {
                  retries = previousAttemptsOf(metadata);
                  nextMetadata(metadata);
                },
              }
            : {}),
          onReceiveStatus: (received, nextStatus) => {
            outboundEnded?.();
            const callStatus =
              noEndpointDetails !== undefined && received.code === status.UNAVAILABLE && NO_ENDPOINT_DETAILS.has(received.details)
                ? { ...received, details: noEndpointDetails }
                : received.code === status.CANCELLED
                  ? atDeadline(received, deadline, Date.now())
                  : received;
            const record: CallRecord = {
              side: "client",
              method,
              type,
              requestId,
              code: callStatus.code,
              details: callStatus.details,
              durationMs: elapsedMs(startedAt),
              peer: call.getPeer(),
              ...(countsAttempts ? { attempts: 1 + Math.max(retries, previousAttemptsOf(received.metadata)) } : {}),
            };
            for (const sink of sinks) sink.callEnded(record);
            if (span !== undefined) endSpan(span, callStatus.code, callStatus.details);
            nextStatus(callStatus);
          },
        });
      },
    });
  };
}

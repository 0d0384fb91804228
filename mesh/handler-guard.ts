import { status } from "@grpc/grpc-js";
import type {
  ServerErrorResponse,
  ServiceDefinition,
  StatusObject,
  UntypedHandleCall,
  UntypedServiceImplementation,
  sendUnaryData,
} from "@grpc/grpc-js";
import type { Logger } from "./logger";
import { runInInboundCall } from "./call-context";
import type { ServerSurfaceCall } from "./call-context";
import { MeshError } from "./errors";

type ErrorEmitter = { emit(event: string | symbol, ...args: unknown[]): boolean };

/**
 * Wraps every handler of a service so that nothing a handler throws, rejects or passes as an error
 * reaches grpc-js unconverted: MeshErrors and gRPC statuses keep their code; anything else becomes
 * INTERNAL with generic details, and its stack goes to the log, never to the caller. Each handler
 * runs inside its call's context (call-context.ts), which outbound calls inherit their deadline and
 * cancellation from.
 */
export function guardService<S extends UntypedServiceImplementation>(
  definition: ServiceDefinition<S>,
  implementation: S,
  logger: Logger,
): S {
  const guarded: UntypedServiceImplementation = {};
  for (const [name, method] of Object.entries<ServiceDefinition[string]>(definition)) {
    const handler = implementation[name];
    if (typeof handler !== "function") {
      continue; // grpc-js answers UNIMPLEMENTED for a method without a handler
    }
    const toStatus = statusReporter(logger, method.path);
    guarded[name] = method.responseStream
      ? guardStreamingResponse(handler, toStatus)
      : guardCallbackResponse(handler, toStatus);
  }
  return guarded as S;
}

/** Converts an error to the status sent to the caller, logging unexpected failures with their stack. */
function statusReporter(logger: Logger, path: string): (error: unknown) => Partial<StatusObject> {
  return (error) => {
    const meshError = MeshError.from(error);
    if (meshError.code === status.INTERNAL || meshError.code === status.UNKNOWN) {
      logger.error({ method: path, err: meshError.cause ?? meshError }, "handler failed");
    }
    return meshError.toStatus();
  };
}

/** Unary and client-streaming handlers answer through a callback. */
function guardCallbackResponse(
  handler: UntypedHandleCall,
  toStatus: (error: unknown) => Partial<StatusObject>,
): UntypedHandleCall {
  const callbackHandler = handler as (call: unknown, callback: sendUnaryData<unknown>) => unknown;
  return ((call: unknown, callback: sendUnaryData<unknown>) => {
    let isAnswered = false;
    const answer: sendUnaryData<unknown> = (error, value, trailer, flags) => {
      if (isAnswered) return;
      isAnswered = true;
      if (error) {
        callback(toStatus(error) as ServerErrorResponse);
      } else {
        callback(null, value, trailer, flags);
      }
    };
    try {
      const result = runInInboundCall(call as ServerSurfaceCall, () => callbackHandler(call, answer));
      if (result instanceof Promise) result.catch((error: unknown) => answer(error as Error));
    } catch (error) {
      answer(error as Error);
    }
  }) as UntypedHandleCall;
}

/** Server-streaming and bidi handlers end with `emit("error")` or `end()` on the call. */
function guardStreamingResponse(
  handler: UntypedHandleCall,
  toStatus: (error: unknown) => Partial<StatusObject>,
): UntypedHandleCall {
  const streamHandler = handler as (call: ErrorEmitter) => unknown;
  return ((call: ErrorEmitter) => {
    const emit = call.emit.bind(call);
    // grpc-js turns an emitted error into the call's status; convert it first so that a raw
    // Error's message never reaches the caller.
    call.emit = (event: string | symbol, ...args: unknown[]) =>
      event === "error" ? emit("error", toStatus(args[0])) : emit(event, ...args);
    try {
      const result = runInInboundCall(call as unknown as ServerSurfaceCall, () => streamHandler(call));
      if (result instanceof Promise) result.catch((error: unknown) => call.emit("error", error));
    } catch (error) {
      call.emit("error", error);
    }
  }) as UntypedHandleCall;
}

import { once } from "node:events";
import type {
  ServerUnaryCall,
  ServerWritableStream,
  handleServerStreamingCall,
  handleUnaryCall,
} from "@grpc/grpc-js";
import { MeshError } from "./errors";

/**
 * Adapts an async function to a grpc-js unary handler: the resolved value is the response, a thrown
 * MeshError becomes its status, anything else INTERNAL (the cause kept for the server's log).
 */
export function unary<Req, Res>(
  fn: (request: Req, call: ServerUnaryCall<Req, Res>) => Promise<Res> | Res,
): handleUnaryCall<Req, Res> {
  return (call, callback) => {
    Promise.resolve()
      .then(() => fn(call.request, call))
      .then(
        (response) => callback(null, response),
        (error: unknown) => callback(MeshError.from(error)),
      );
  };
}

/**
 * Adapts an (async) iterable of responses to a grpc-js server-streaming handler. Writes respect
 * HTTP/2 flow control (await `drain`), stop when the caller cancels, and end the call when done.
 */
export function serverStream<Req, Res>(
  fn: (request: Req, call: ServerWritableStream<Req, Res>) => AsyncIterable<Res> | Iterable<Res>,
): handleServerStreamingCall<Req, Res> {
  return (call) => {
    writeAll(call, fn(call.request, call)).then(
      () => {
        if (!call.cancelled) call.end();
      },
      (error: unknown) => {
        if (!call.cancelled) call.emit("error", MeshError.from(error));
      },
    );
  };
}

async function writeAll<Res>(
  call: ServerWritableStream<unknown, Res>,
  responses: AsyncIterable<Res> | Iterable<Res>,
): Promise<void> {
  for await (const response of responses) {
    if (call.cancelled) return;
    if (!call.write(response)) {
      await Promise.race([once(call, "drain"), once(call, "cancelled")]);
    }
  }
}

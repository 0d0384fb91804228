import type { Metadata } from "@grpc/grpc-js";
import type { GatewayMethod } from "./methods";

/** What server.ts gives each request's handler (the JSON transcoder or gRPC-Web). */
export interface GatewayCall {
  /** The request's id: the caller's `x-request-id` when acceptable, else a new one; echoed in the answer. */
  requestId: string;
  /** Absolute deadline (Date.now ms) from `grpc-timeout` or `x-timeout-ms`; undefined: the method's mesh default. */
  deadline: number | undefined;
  /**
   * Called by a handler once it knows the method and before it calls the backend: runs the guard
   * (auth, rate limit) and resolves to the metadata to send (x-request-id and the claims), or
   * rejects with a GatewayError (401, 403, 429).
   */
  admit(method: GatewayMethod): Promise<Metadata>;
}

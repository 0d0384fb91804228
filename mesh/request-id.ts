import { randomUUID } from "node:crypto";
import type { Metadata } from "@grpc/grpc-js";

/** Metadata key that carries a request's id across hops (the de-facto header of proxies and meshes). */
export const REQUEST_ID_KEY = "x-request-id";

// Printable ASCII without spaces, at most 128 characters: anything else is replaced, so a garbage
// header can neither break a log line nor grow without bound.
const ACCEPTABLE_REQUEST_ID = /^[\x21-\x7e]{1,128}$/;

/** Returns the request id carried in `metadata` when it is acceptable, otherwise a new UUID. */
export function requestIdFrom(metadata: Metadata | undefined): string {
  return acceptableRequestId(metadata?.get(REQUEST_ID_KEY)[0]);
}

/** `value` when it is an acceptable request id (an HTTP header's, say), otherwise a new UUID. */
export function acceptableRequestId(value: unknown): string {
  return typeof value === "string" && ACCEPTABLE_REQUEST_ID.test(value) ? value : randomUUID();
}

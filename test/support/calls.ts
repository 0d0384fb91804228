import { Metadata } from "@grpc/grpc-js";
import type { CallOptions, ClientReadableStream, ClientUnaryCall, ServiceError } from "@grpc/grpc-js";

type UnaryMethod<Req, Res> = (
  request: Req,
  metadata: Metadata,
  options: Partial<CallOptions>,
  callback: (error: ServiceError | null, response: Res) => void,
) => ClientUnaryCall;

/** Outcome of a unary call: the response or the error, plus the response headers. */
export interface UnaryOutcome<Res> {
  response?: Res;
  error?: ServiceError;
  headers?: Metadata;
}

/** Calls a generated client's unary method and resolves with its outcome (never rejects). */
export function callUnary<Req, Res>(
  method: UnaryMethod<Req, Res>,
  client: object,
  request: Req,
  options: Partial<CallOptions> = {},
  metadata: Metadata = new Metadata(),
): Promise<UnaryOutcome<Res>> {
  return new Promise((resolve) => {
    let headers: Metadata | undefined;
    const call = method.call(client, request, metadata, options, (error, response) => {
      resolve(error ? { error, headers } : { response, headers });
    });
    call.on("metadata", (received: Metadata) => {
      headers = received;
    });
  });
}

/** Calls a unary method and returns the response, failing with the gRPC error otherwise. */
export async function expectOk<Req, Res>(
  method: UnaryMethod<Req, Res>,
  client: object,
  request: Req,
  options: Partial<CallOptions> = {},
): Promise<Res> {
  const outcome = await callUnary(method, client, request, options);
  if (outcome.error) throw outcome.error;
  return outcome.response as Res;
}

/** Collects every message of a server stream, and its final error if it failed. */
export function collectStream<Res>(stream: ClientReadableStream<Res>): Promise<{ messages: Res[]; error?: ServiceError }> {
  return new Promise((resolve) => {
    const messages: Res[] = [];
    stream.on("data", (message: Res) => messages.push(message));
    stream.on("error", (error: ServiceError) => resolve({ messages, error }));
    stream.on("end", () => resolve({ messages }));
  });
}

/** A promise and the functions that settle it, for gating handlers from a test. */
export function gate(): { opened: Promise<void>; open(): void } {
  let open!: () => void;
  const opened = new Promise<void>((resolve) => {
    open = resolve;
  });
  return { opened, open };
}

/**
 * Keeps calling (`call`, one at a time) for `windowMs` from now and returns how long after now the
 * last call that moved `served` came: how soon a replica that was just taken out stopped getting calls.
 */
export async function msUntilLastServed(served: () => number, call: () => Promise<unknown>, windowMs = 1_500): Promise<number> {
  const startedAt = Date.now();
  let lastAt = startedAt;
  let seen = served();
  while (Date.now() - startedAt < windowMs) {
    await call();
    if (served() !== seen) lastAt = Date.now();
    seen = served();
  }
  return lastAt - startedAt;
}

import type { ServerResponse } from "node:http";
import { status } from "@grpc/grpc-js";
import { INTERNAL_DETAILS, isServiceError } from "../../mesh/errors";

/**
 * A failure the gateway answers itself, with the HTTP status and the gRPC code of its
 * google.rpc.Status body, and any headers the answer needs (`WWW-Authenticate`, `Retry-After`, `Allow`).
 */
export class GatewayError extends Error {
  readonly httpStatus: number;
  readonly grpcCode: status;
  readonly headers: Record<string, string>;

  constructor(httpStatus: number, grpcCode: status, message: string, headers: Record<string, string> = {}) {
    super(message);
    this.name = "GatewayError";
    this.httpStatus = httpStatus;
    this.grpcCode = grpcCode;
    this.headers = headers;
  }

  /**
   * Turns anything thrown into a GatewayError: a GatewayError is kept, a gRPC ServiceError keeps its
   * code and details under httpStatusOf(code), anything else is a 500 with generic details (the
   * original belongs in the log, never in a body).
   */
  static from(error: unknown): GatewayError {
    if (error instanceof GatewayError) return error;
    if (isServiceError(error)) return new GatewayError(httpStatusOf(error.code), error.code, error.details);
    return new GatewayError(500, status.INTERNAL, INTERNAL_DETAILS);
  }
}

/** A caller's mistake in the request (400 INVALID_ARGUMENT). */
export function badRequest(message: string): GatewayError {
  return new GatewayError(400, status.INVALID_ARGUMENT, message);
}

/**
 * The HTTP status of a gRPC code, as google.rpc.Code documents it (googleapis
 * google/rpc/code.proto, the mapping grpc-gateway and Envoy's transcoder also use).
 */
export function httpStatusOf(code: status): number {
  switch (code) {
    case status.OK:
      return 200;
    case status.CANCELLED:
      return 499;
    case status.INVALID_ARGUMENT:
    case status.FAILED_PRECONDITION:
    case status.OUT_OF_RANGE:
      return 400;
    case status.DEADLINE_EXCEEDED:
      return 504;
    case status.NOT_FOUND:
      return 404;
    case status.ALREADY_EXISTS:
    case status.ABORTED:
      return 409;
    case status.PERMISSION_DENIED:
      return 403;
    case status.RESOURCE_EXHAUSTED:
      return 429;
    case status.UNIMPLEMENTED:
      return 501;
    case status.UNAVAILABLE:
      return 503;
    case status.UNAUTHENTICATED:
      return 401;
    case status.UNKNOWN:
    case status.INTERNAL:
    case status.DATA_LOSS:
    default:
      return 500;
  }
}

/** The google.rpc.Status JSON of an error (the OpenAPI document's `rpcStatus`). */
export function statusJson(code: status, message: string): { code: number; message: string; details: unknown[] } {
  return { code, message, details: [] };
}

/**
 * Answers with `{"code": <grpc int>, "message": "...", "details": []}` as application/json, unless
 * the head of the response is already sent (then the connection is only ended).
 */
export function writeJsonError(
  res: ServerResponse,
  httpStatus: number,
  code: status,
  message: string,
  headers: Record<string, string> = {},
): void {
  if (res.headersSent) {
    res.end();
    return;
  }
  const body = JSON.stringify(statusJson(code, message));
  res.writeHead(httpStatus, {
    ...headers,
    "content-type": "application/json",
    "content-length": Buffer.byteLength(body),
  });
  res.end(body);
}

/** writeJsonError for a GatewayError. */
export function writeGatewayError(res: ServerResponse, error: GatewayError): void {
  writeJsonError(res, error.httpStatus, error.grpcCode, error.message, error.headers);
}

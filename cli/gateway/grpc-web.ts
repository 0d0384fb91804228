/**
 * gRPC-Web at the gateway: browsers call mesh services with `fetch`, in the framing of the gRPC-Web
 * protocol (github.com/grpc/grpc/blob/master/doc/PROTOCOL-WEB.md), and the gateway makes the gRPC call.
 *
 * A request is POST /<package.Service>/<Method> with content-type `application/grpc-web` (`+proto`)
 * or `application/grpc-web-text` (`+proto`: the whole body base64). Its body is one frame: a flag byte
 * (0x00 data), a 4-byte big-endian length, the message. The answer is data frames, one per message,
 * then one trailer frame (flag 0x80) holding `grpc-status`, `grpc-message` (percent-encoded as
 * PROTOCOL-HTTP2.md says) and the backend's trailers as HTTP/1.1 header lines; always HTTP 200, as
 * gRPC-Web clients expect. A call that fails before any message is answered trailers-only: the
 * trailers as HTTP headers and an empty body (PROTOCOL-WEB.md, "Trailers-only responses").
 */
import type * as http from "node:http";
import { fromBinary } from "@bufbuild/protobuf";
import { Metadata, status } from "@grpc/grpc-js";
import type { StatusObject } from "@grpc/grpc-js";
import { INTERNAL_DETAILS, MeshError, isServiceError } from "../../mesh/errors";
import type { Logger } from "../../mesh/logger";
import type { Backends } from "./backends";
import { GatewayError } from "./errors";
import type { GatewayCall } from "./gateway-call";
import { MAX_BODY_BYTES, readBody } from "./http-body";
import type { GatewayMethod } from "./methods";

/** Frame flags (PROTOCOL-WEB.md): the high bit marks trailers, the low bit a compressed message. */
const DATA_FLAG = 0x00;
const TRAILER_FLAG = 0x80;
const COMPRESSED_FLAG = 0x01;
/** A frame's flag byte and 4-byte length. */
const FRAME_HEADER_BYTES = 5;
/** How long a browser may cache a preflight answer: 10 minutes (Chromium caps it at 2 hours). */
export const PREFLIGHT_MAX_AGE_S = 600;
/** Request headers a gRPC-Web client sends that a cross-origin page may set (content-type is not CORS-safelisted for these types). */
export const GRPC_WEB_ALLOWED_HEADERS = ["content-type", "x-grpc-web", "x-user-agent", "grpc-timeout", "authorization", "x-request-id", "traceparent", "tracestate"];
/** What a preflight for any other path (the JSON API) allows: its methods, and its deadline header. */
const JSON_API_METHODS = "GET, POST, PUT, PATCH, DELETE";
const JSON_API_ALLOWED_HEADERS = ["content-type", "authorization", "x-request-id", "x-timeout-ms", "grpc-timeout", "traceparent", "tracestate"];
/** Response headers a page may read: a trailers-only answer's status, and the request id. */
export const GRPC_WEB_EXPOSED_HEADERS = ["grpc-status", "grpc-message", "x-request-id"];
/** HTTP/2 and gRPC framing headers that never travel as metadata in either direction. */
const RESERVED_HEADERS = new Set([
  "content-type", "content-length", "transfer-encoding", "connection", "te", "user-agent", "date",
  "grpc-status", "grpc-message", "grpc-encoding", "grpc-accept-encoding", "grpc-timeout",
]);
const CONTENT_TYPE = /^application\/grpc-web(-text)?(\+proto)?$/;

/** Options of the gRPC-Web handler. */
export interface GrpcWebOptions {
  /** Origins allowed to call from a browser; none (undefined or empty): any origin, `*` (development). */
  corsOrigins?: readonly string[];
  /** Where unexpected failures are logged (they reach the caller as INTERNAL without details). */
  logger?: Logger;
  /** The largest request body read (default MAX_BODY_BYTES, the gateway's). */
  maxBodyBytes?: number;
}

/** True for a gRPC-Web request (any `application/grpc-web*` content type) or a CORS preflight, which the gRPC-Web handler answers. */
export function isGrpcWeb(req: http.IncomingMessage): boolean {
  if (req.method === "OPTIONS" && req.headers["access-control-request-method"] !== undefined) return true;
  return /^application\/grpc-web/i.test(req.headers["content-type"] ?? "");
}

/**
 * Sets the CORS response headers of a request from a browser: Access-Control-Allow-Origin when the
 * Origin is allowed (`*` when no origins are configured, else the Origin itself, with Vary: Origin),
 * and the headers a page may read. Exported so the JSON API can answer the same way.
 */
export function applyCors(req: http.IncomingMessage, res: http.ServerResponse, corsOrigins: readonly string[] = []): void {
  const origin = req.headers.origin;
  const isAnyOrigin = corsOrigins.length === 0 || corsOrigins.includes("*");
  if (!isAnyOrigin) res.setHeader("vary", "Origin");
  if (origin === undefined) return;
  if (!isAnyOrigin && !corsOrigins.includes(origin)) return;
  res.setHeader("access-control-allow-origin", isAnyOrigin ? "*" : origin);
  res.setHeader("access-control-expose-headers", GRPC_WEB_EXPOSED_HEADERS.join(", "));
}

/**
 * The gRPC-Web handler for `methods` (unary and server-streaming), calling them through `backends`.
 * It answers CORS preflights too. It never rejects for a caller's mistake: every failure of a call
 * ends as a grpc-status.
 */
export function grpcWebHandler(
  methods: readonly GatewayMethod[],
  backends: Backends,
  options: GrpcWebOptions = {},
): (req: http.IncomingMessage, res: http.ServerResponse, call: GatewayCall) => Promise<void> {
  const byPath = new Map(methods.map((method) => [method.path, method]));
  return async (req, res, call) => {
    applyCors(req, res, options.corsOrigins);
    if (req.method === "OPTIONS") return preflight(res, byPath.has((req.url ?? "/").split("?")[0]));
    const match = CONTENT_TYPE.exec((req.headers["content-type"] ?? "").split(";")[0].trim().toLowerCase());
    if (match === null) return plainError(res, 415, `unsupported gRPC-Web content type ${JSON.stringify(req.headers["content-type"])}: use application/grpc-web(-text)(+proto)`);
    if (req.method !== "POST") {
      res.setHeader("allow", "POST, OPTIONS");
      return plainError(res, 405, `gRPC-Web calls are POST, got ${req.method}`);
    }
    const reply = new GrpcWebReply(res, match[1] === "-text");
    const path = (req.url ?? "/").split("?")[0];
    const method = byPath.get(path);
    if (method === undefined) return reply.end(status.UNIMPLEMENTED, `unknown method ${path}`);
    try {
      // The backend gets only what the guard admits (x-request-id and claims): a browser's own
      // headers, x-grpc-web and x-user-agent included, are not forwarded as metadata, so that a page
      // cannot set what a mesh service trusts.
      const metadata = await call.admit(method);
      const message = requestMessage(method, await readGrpcWebBody(req, match[1] === "-text", options.maxBodyBytes ?? MAX_BODY_BYTES));
      if (method.serverStreaming) return await serverStream(reply, backends, method, message, metadata, call.deadline);
      const { response, headers, trailers } = await backends.call(method, message, metadata, call.deadline);
      reply.unary(headers, response, trailers);
    } catch (error) {
      const failure = failureOf(error);
      if (failure.code === status.INTERNAL && failure.details === INTERNAL_DETAILS) {
        options.logger?.error({ err: error, grpcMethod: method.path, requestId: call.requestId }, "gRPC-Web call failed unexpectedly");
      }
      reply.end(failure.code, failure.details, failure.metadata, failure.headers);
    }
  };
}

/** A gRPC method's path takes POST with the gRPC-Web headers; any other path is the JSON API's. */
function preflight(res: http.ServerResponse, isGrpcMethod: boolean): void {
  res.writeHead(204, {
    "access-control-allow-methods": isGrpcMethod ? "POST" : JSON_API_METHODS,
    "access-control-allow-headers": (isGrpcMethod ? GRPC_WEB_ALLOWED_HEADERS : JSON_API_ALLOWED_HEADERS).join(", "),
    "access-control-max-age": String(PREFLIGHT_MAX_AGE_S),
  });
  res.end();
}

/** A request that is not gRPC-Web at all (wrong method or codec) gets a plain HTTP error. */
function plainError(res: http.ServerResponse, httpStatus: number, message: string): void {
  res.writeHead(httpStatus, { "content-type": "text/plain; charset=utf-8" });
  res.end(`${message}\n`);
}

/** The status a failure ends the call with: a gateway refusal, a backend's status, or INTERNAL. */
function failureOf(error: unknown): { code: status; details: string; metadata?: Metadata; headers?: Record<string, string> } {
  if (error instanceof GatewayError) return { code: error.grpcCode, details: error.message, headers: error.headers };
  if (error instanceof MeshError) return { code: error.code, details: error.details, metadata: error.metadata };
  if (isServiceError(error)) return { code: error.code, details: error.details, metadata: error.metadata };
  return { code: status.INTERNAL, details: INTERNAL_DETAILS };
}

/**
 * Reads the body, at most the gateway's limit (a larger one ends the call RESOURCE_EXHAUSTED, as a
 * gRPC server refuses a message over its receive limit), base64-decoded in text mode.
 */
async function readGrpcWebBody(req: http.IncomingMessage, isText: boolean, limit: number): Promise<Buffer> {
  const body = await readBody(req, limit);
  return isText ? decodeBase64Body(body.toString("latin1")) : body;
}

/**
 * Decodes a text-mode body. A client may send several base64 chunks, each padded (PROTOCOL-WEB.md),
 * so each padded run is decoded on its own; line breaks are ignored.
 */
function decodeBase64Body(text: string): Buffer {
  const compact = text.replace(/[\r\n\t ]/g, "");
  if (!/^[A-Za-z0-9+/=]*$/.test(compact)) throw new MeshError(status.INTERNAL, "malformed gRPC-Web text request: the body is not base64");
  const runs = compact.match(/[^=]+={0,2}|=+/g) ?? [];
  if (runs.some((run) => run.length % 4 !== 0 || /^=/.test(run))) {
    throw new MeshError(status.INTERNAL, "malformed gRPC-Web text request: the base64 body is truncated or badly padded");
  }
  return Buffer.concat(runs.map((run) => Buffer.from(run, "base64")));
}

/** The one request message of a unary or server-streaming call, checked against the method's input type. */
function requestMessage(method: GatewayMethod, body: Buffer): Uint8Array {
  const messages: Buffer[] = [];
  for (let offset = 0; offset < body.length; ) {
    if (body.length - offset < FRAME_HEADER_BYTES) {
      throw new MeshError(status.INTERNAL, `malformed gRPC-Web request: ${body.length - offset} bytes left at offset ${offset}, less than a frame header`);
    }
    const flag = body[offset];
    const length = body.readUInt32BE(offset + 1);
    const start = offset + FRAME_HEADER_BYTES;
    if (length > body.length - start) {
      throw new MeshError(status.INTERNAL, `malformed gRPC-Web request: the frame at offset ${offset} declares ${length} bytes but ${body.length - start} follow`);
    }
    if (flag & TRAILER_FLAG) throw new MeshError(status.INTERNAL, "malformed gRPC-Web request: a request carries no trailer frame");
    if (flag & COMPRESSED_FLAG) throw new MeshError(status.UNIMPLEMENTED, "compressed request messages are not supported: send them uncompressed");
    if (flag !== DATA_FLAG) throw new MeshError(status.INTERNAL, `malformed gRPC-Web request: unknown frame flag 0x${flag.toString(16)}`);
    messages.push(body.subarray(start, start + length));
    offset = start + length;
  }
  if (messages.length !== 1) {
    throw new MeshError(status.INTERNAL, `malformed gRPC-Web request: ${method.path} takes one request message, got ${messages.length}`);
  }
  try {
    fromBinary(method.input, messages[0]);
  } catch (error) {
    throw new MeshError(status.INVALID_ARGUMENT, `the request is not a valid ${method.input.typeName}: ${(error as Error).message}`, { cause: error });
  }
  return messages[0];
}

/** Relays a server stream: a data frame per message, with backpressure, then the trailers; cancels the backend call when the browser goes away. */
function serverStream(
  reply: GrpcWebReply,
  backends: Backends,
  method: GatewayMethod,
  message: Uint8Array,
  metadata: Metadata,
  deadline: number | undefined,
): Promise<void> {
  return new Promise((resolve) => {
    const stream = backends.stream(method, message, metadata, deadline);
    let headers = new Metadata();
    let final: StatusObject | undefined;
    let isEnded = false;
    const finish = () => {
      // After 'end' too, so that no message buffered in the stream is lost behind the status.
      if (final === undefined || !isEnded || reply.isDone || reply.res.destroyed) return;
      reply.end(final.code, final.details, final.metadata, undefined, headers);
      resolve();
    };
    stream.on("metadata", (received: Metadata) => (headers = received));
    stream.on("data", (chunk: Uint8Array) => {
      if (!reply.message(chunk, headers)) {
        stream.pause();
        reply.res.once("drain", () => stream.resume());
      }
    });
    // The 'status' event carries the outcome; 'error' is the same status as an exception.
    stream.on("error", () => undefined);
    stream.on("status", (received: StatusObject) => {
      final = received;
      finish();
    });
    stream.on("end", () => {
      isEnded = true;
      finish();
    });
    reply.res.once("close", () => {
      if (!reply.isDone) stream.cancel();
      resolve();
    });
  });
}

/** Writes one call's answer: headers once, data frames, then trailers (or trailers-only). */
class GrpcWebReply {
  private hasHeaders = false;
  isDone = false;

  constructor(
    readonly res: http.ServerResponse,
    private readonly isText: boolean,
  ) {}

  /** A unary success: headers, the data frame and the trailer frame in one write. */
  unary(headers: Metadata, response: Uint8Array, trailers: Metadata): void {
    this.writeHeaders(headers);
    this.isDone = true;
    this.res.end(this.encode(Buffer.concat([frame(DATA_FLAG, response), frame(TRAILER_FLAG, trailerBlock(status.OK, "", trailers))])));
  }

  /** One message of a stream; false when the socket wants the caller to wait for 'drain'. */
  message(payload: Uint8Array, headers: Metadata): boolean {
    this.writeHeaders(headers);
    return this.res.write(this.encode(frame(DATA_FLAG, payload)));
  }

  /** The end of the call: a trailer frame after the headers, else a trailers-only answer. */
  end(code: status, details: string, trailers = new Metadata(), httpHeaders: Record<string, string> = {}, headers = new Metadata()): void {
    if (this.isDone) return;
    this.isDone = true;
    if (this.hasHeaders) {
      this.res.end(this.encode(frame(TRAILER_FLAG, trailerBlock(code, details, trailers))));
      return;
    }
    const merged = headers.clone();
    merged.merge(trailers);
    for (const [name, value] of Object.entries(httpHeaders)) this.res.setHeader(name, value);
    this.res.setHeader("grpc-status", String(code));
    this.res.setHeader("grpc-message", percentEncode(details));
    this.writeHeaders(merged);
    this.res.end();
  }

  private writeHeaders(headers: Metadata): void {
    if (this.hasHeaders) return;
    this.hasHeaders = true;
    for (const [name, values] of metadataLines(headers)) this.res.setHeader(name, values);
    this.res.writeHead(200, { "content-type": this.isText ? "application/grpc-web-text+proto" : "application/grpc-web+proto" });
  }

  /** Text mode: each write is base64 on its own (padded), as PROTOCOL-WEB.md lets a server send it. */
  private encode(bytes: Buffer): Buffer | string {
    return this.isText ? bytes.toString("base64") : bytes;
  }
}

function frame(flag: number, payload: Uint8Array): Buffer {
  const bytes = Buffer.allocUnsafe(FRAME_HEADER_BYTES + payload.length);
  bytes[0] = flag;
  bytes.writeUInt32BE(payload.length, 1);
  bytes.set(payload, FRAME_HEADER_BYTES);
  return bytes;
}

/** The trailer frame's payload: header lines, `grpc-status` and `grpc-message` first. */
function trailerBlock(code: status, details: string, trailers: Metadata): Buffer {
  const lines = [`grpc-status: ${code}`, `grpc-message: ${percentEncode(details)}`];
  for (const [name, values] of metadataLines(trailers)) for (const value of values) lines.push(`${name}: ${value}`);
  return Buffer.from(lines.map((line) => `${line}\r\n`).join(""), "latin1");
}

/** Metadata as header lines (-bin values base64), without reserved names or values a header cannot carry. */
function metadataLines(metadata: Metadata): Array<[string, string[]]> {
  const lines: Array<[string, string[]]> = [];
  for (const [name, value] of Object.entries(metadata.toHttp2Headers())) {
    if (name.startsWith(":") || RESERVED_HEADERS.has(name) || value === undefined) continue;
    const values = (Array.isArray(value) ? value : [value]).map(String).filter((text) => /^[\x20-\x7e]*$/.test(text));
    if (values.length > 0) lines.push([name, values]);
  }
  return lines;
}

/**
 * grpc-message as PROTOCOL-HTTP2.md says: the UTF-8 bytes, each outside printable ASCII (0x20-0x7E)
 * or a '%' written as %XX.
 */
export function percentEncode(message: string): string {
  let encoded = "";
  for (const byte of Buffer.from(message, "utf8")) {
    encoded += byte >= 0x20 && byte <= 0x7e && byte !== 0x25 ? String.fromCharCode(byte) : `%${byte.toString(16).toUpperCase().padStart(2, "0")}`;
  }
  return encoded;
}

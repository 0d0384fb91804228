import type { IncomingMessage, ServerResponse } from "node:http";
import { fromBinary, toBinary, toJson } from "@bufbuild/protobuf";
import type { JsonValue } from "@bufbuild/protobuf";
import { status } from "@grpc/grpc-js";
import type { Metadata } from "@grpc/grpc-js";
import { INTERNAL_DETAILS } from "../../mesh/errors";
import type { Logger } from "../../mesh/logger";
import type { Backends } from "./backends";
import { GatewayError, badRequest, statusJson, writeGatewayError } from "./errors";
import type { GatewayCall } from "./gateway-call";
import { MAX_BODY_BYTES, readBodyText } from "./http-body";
import type { GatewayMethod } from "./methods";
import { bindRequest } from "./request-binding";
import { RouteTable } from "./routes";
import type { Route } from "./routes";

/**
 * Content type of JSON answers, streams included: grpc-gateway's (its streams are
 * newline-delimited JSON under application/json), and what the OpenAPI document declares.
 */
export const JSON_CONTENT_TYPE = "application/json";

/** Options of {@link transcoder}. */
export interface TranscoderOptions {
  logger: Logger;
  /** The route table to use (server.ts shares its own); made from `methods` when absent. */
  routes?: RouteTable;
  maxBodyBytes?: number;
}

/** A request's path (no query string) and its query parameters. */
export function splitUrl(url: string | undefined): { path: string; query: URLSearchParams } {
  const text = url ?? "/";
  const mark = text.indexOf("?");
  return mark < 0 ? { path: text, query: new URLSearchParams() } : { path: text.slice(0, mark), query: new URLSearchParams(text.slice(mark + 1)) };
}

/**
 * HTTP/JSON to gRPC per the methods' google.api.http rules (grpc-gateway's and Envoy's
 * gRPC-JSON transcoder's mapping): the request message from the path, query and body; the answer
 * as proto3 JSON (toJson: JSON names, 64-bit integers as strings, defaults omitted); a
 * server-streaming method as one `{"result": ...}` line per message and, when the stream fails after
 * its first message, an `{"error": <google.rpc.Status>}` line; any other failure as the
 * google.rpc.Status JSON under httpStatusOf(code). The handler resolves false, having written
 * nothing, when no rule takes the method and path (server.ts answers 404 or 405).
 */
export function transcoder(
  methods: readonly GatewayMethod[],
  backends: Backends,
  options: TranscoderOptions,
): (req: IncomingMessage, res: ServerResponse, call: GatewayCall) => Promise<boolean> {
  const routes = options.routes ?? new RouteTable(methods);
  const logger = options.logger.child({ component: "gateway.transcode" });
  const maxBodyBytes = options.maxBodyBytes ?? MAX_BODY_BYTES;
  return async (req, res, call) => {
    const { path, query } = splitUrl(req.url);
    let match;
    try {
      match = routes.match(req.method ?? "GET", path);
    } catch {
      writeGatewayError(res, badRequest(`the path ${JSON.stringify(path)} has a malformed percent-encoding`));
      return true;
    }
    if (match.kind !== "found") return false;
    const { route, bindings } = match;
    try {
      const metadata = await call.admit(route.method);
      const bodyText = route.body === "" ? "" : await readBodyText(req, maxBodyBytes);
      const request = toBinary(route.method.input, bindRequest(route, bindings, query, bodyText));
      if (route.method.serverStreaming) await streamCall(res, backends, route, request, metadata, call.deadline);
      else await unaryCall(res, backends, route, request, metadata, call.deadline);
    } catch (error) {
      const failure = GatewayError.from(error);
      if (failure.grpcCode === status.INTERNAL && failure.message === INTERNAL_DETAILS && !(error instanceof GatewayError)) {
        logger.error({ err: error, grpcMethod: route.method.path, requestId: call.requestId }, "transcoded call failed unexpectedly");
      }
      writeGatewayError(res, failure);
    }
    return true;
  };
}

async function unaryCall(
  res: ServerResponse,
  backends: Backends,
  route: Route,
  request: Uint8Array,
  metadata: Metadata,
  deadline: number | undefined,
): Promise<void> {
  // A caller that hangs up cancels the backend call rather than leaving it to its deadline.
  const hangUp = new AbortController();
  const onClose = (): void => {
    if (!res.writableFinished) hangUp.abort();
  };
  res.once("close", onClose);
  const { response } = await backends.call(route.method, request, metadata, deadline, hangUp.signal);
  const body = JSON.stringify(responseJson(route, response));
  res.writeHead(200, { "content-type": JSON_CONTENT_TYPE, "content-length": Buffer.byteLength(body) });
  res.end(body);
}

/**
 * A server-streaming call as newline-delimited JSON. The head is sent with the first message, so a
 * call that fails before any is answered like a unary one, with its HTTP status; the backend call
 * is cancelled when the HTTP client goes away, and paused while the socket's buffer is full.
 */
function streamCall(
  res: ServerResponse,
  backends: Backends,
  route: Route,
  request: Uint8Array,
  metadata: Metadata,
  deadline: number | undefined,
): Promise<void> {
  const stream = backends.stream(route.method, request, metadata, deadline);
  return new Promise((resolve, reject) => {
    let isEnded = false;
    const end = (): void => {
      isEnded = true;
      resolve();
    };
    res.once("close", () => {
      if (!isEnded) stream.cancel();
    });
    res.on("drain", () => stream.resume());
    stream.on("data", (bytes: Uint8Array) => {
      if (isEnded) return;
      let line: string;
      try {
        line = `${JSON.stringify({ result: responseJson(route, bytes) })}\n`;
      } catch (error) {
        stream.cancel();
        fail(error);
        return;
      }
      if (!res.headersSent) res.writeHead(200, { "content-type": JSON_CONTENT_TYPE });
      if (!res.write(line)) stream.pause();
    });
    const fail = (error: unknown): void => {
      if (isEnded) return;
      if (!res.headersSent) {
        isEnded = true;
        reject(error);
        return;
      }
      const failure = GatewayError.from(error);
      res.end(`${JSON.stringify({ error: statusJson(failure.grpcCode, failure.message) })}\n`);
      end();
    };
    stream.on("error", fail);
    stream.on("end", () => {
      if (isEnded) return;
      if (!res.headersSent) res.writeHead(200, { "content-type": JSON_CONTENT_TYPE });
      res.end();
      end();
    });
  });
}

/** The JSON of a response: the whole message, or its `response_body` field. */
function responseJson(route: Route, bytes: Uint8Array): JsonValue {
  const { output } = route.method;
  let message;
  try {
    message = fromBinary(output, bytes);
  } catch (error) {
    throw new Error(`the response of ${route.method.path} does not decode`, { cause: error });
  }
  const json = toJson(output, message) as Record<string, JsonValue>;
  if (route.responseBody === "") return json;
  const field = output.fields.find((candidate) => candidate.name === route.responseBody);
  if (field === undefined) return json;
  // An unset field is omitted by toJson; its default (`[]`, `{}`, `0`, `""`) is still the body.
  return json[field.jsonName] ?? (toJson(output, message, { alwaysEmitImplicit: true }) as Record<string, JsonValue>)[field.jsonName] ?? null;
}

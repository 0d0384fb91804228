import * as fs from "node:fs";
import * as http from "node:http";
import type { AddressInfo, Socket } from "node:net";
import * as path from "node:path";
import { Metadata, status } from "@grpc/grpc-js";
import type { Logger } from "../../mesh/logger";
import { REQUEST_ID_KEY, acceptableRequestId } from "../../mesh/request-id";
import { TRACEPARENT_KEY, TRACESTATE_KEY } from "../../mesh/tracing";
import type { Backends } from "./backends";
import { GatewayError, writeGatewayError, writeJsonError } from "./errors";
import type { GatewayCall } from "./gateway-call";
import { applyCors, grpcWebHandler, isGrpcWeb } from "./grpc-web";
import { MAX_BODY_BYTES, bodyTooLarge } from "./http-body";
import type { GatewayMethod } from "./methods";
import { RouteTable } from "./routes";
import { requestDeadline } from "./timeout-header";
import { splitUrl, transcoder } from "./transcode";

export type { GatewayCall } from "./gateway-call";

/** The OpenAPI 2.0 document `make gen` writes from the shop's protos (protoc-gen-openapiv2). */
export const DEFAULT_OPENAPI_DOCUMENT = path.resolve(__dirname, "..", "..", "..", "generated", "openapi", "shop.swagger.json");
/** How long close() lets requests in flight (long streams) finish before it closes their connections. */
export const CLOSE_GRACE_MS = 5_000;

/** The gateway's auth and rate limits (auth.ts GatewayGuard): the claims metadata, or a GatewayError. */
export interface CallGuard {
  admit(method: GatewayMethod, req: http.IncomingMessage): Promise<Metadata>;
}

/** Options of {@link createGateway}. */
export interface GatewayOptions {
  methods: readonly GatewayMethod[];
  backends: Backends;
  logger: Logger;
  guard?: CallGuard;
  /** Origins browsers may call from (gRPC-Web and JSON); none: any. */
  corsOrigins?: string[];
  openApiDocument?: string;
  maxBodyBytes?: number;
}

/** A gateway's HTTP server. */
export interface Gateway {
  server: http.Server;
  /** Listens on `port` (0: any) of `host`; resolves to the bound port. */
  listen(port: number, host?: string): Promise<number>;
  /** Stops accepting, lets requests in flight finish (at most CLOSE_GRACE_MS), then closes every connection. */
  close(): Promise<void>;
}

/**
 * The gateway's HTTP/1.1 server: every request gets a request id (the caller's `x-request-id` when
 * acceptable, else a new one, echoed) and a deadline (timeout-header.ts), then goes to gRPC-Web
 * (grpc-web.ts, CORS preflights included), GET /openapi.json, GET /healthz or the JSON transcoder
 * (transcode.ts); nothing matching is 404, a known path with another method 405. One log line per
 * request. A handler's unexpected failure is a 500 without internals, and logged: no request can
 * crash the process.
 */
export function createGateway(options: GatewayOptions): Gateway {
  const logger = options.logger.child({ component: "gateway" });
  const maxBodyBytes = options.maxBodyBytes ?? MAX_BODY_BYTES;
  const routes = new RouteTable(options.methods);
  const transcode = transcoder(options.methods, options.backends, { logger: options.logger, routes, maxBodyBytes });
  const grpcWeb = grpcWebHandler(options.methods, options.backends, { corsOrigins: options.corsOrigins, logger: options.logger, maxBodyBytes });
  const openApiPath = options.openApiDocument ?? DEFAULT_OPENAPI_DOCUMENT;
  let openApi: Buffer | undefined;
  const fixedRoutes: Record<string, (res: http.ServerResponse) => void> = {
    "/openapi.json": (res) => {
      openApi ??= fs.readFileSync(openApiPath);
      res.writeHead(200, { "content-type": "application/json", "content-length": openApi.length });
      res.end(openApi);
    },
    "/healthz": (res) => {
      const body = JSON.stringify({ status: "SERVING" });
      res.writeHead(200, { "content-type": "application/json", "content-length": Buffer.byteLength(body) });
      res.end(body);
    },
  };

  const handle = async (req: http.IncomingMessage, res: http.ServerResponse, call: GatewayCall): Promise<void> => {
    // gRPC-Web answers an oversized body in its own protocol (grpc-status 8), the JSON API with 413.
    if (isGrpcWeb(req)) return grpcWeb(req, res, call);
    if (Number(req.headers["content-length"] ?? 0) > maxBodyBytes) return writeGatewayError(res, bodyTooLarge(maxBodyBytes));
    applyCors(req, res, options.corsOrigins);
    const { path: requestPath } = splitUrl(req.url);
    const fixed = fixedRoutes[requestPath];
    if (fixed !== undefined) {
      if (req.method === "GET") return fixed(res);
      return writeJsonError(res, 405, status.UNIMPLEMENTED, `${requestPath} takes GET, not ${req.method}`, { allow: "GET" });
    }
    if (await transcode(req, res, call)) return;
    const match = routes.match(req.method ?? "GET", requestPath);
    if (match.kind === "method-not-allowed") {
      return writeJsonError(res, 405, status.UNIMPLEMENTED, `${requestPath} takes ${match.allow.join(", ")}, not ${req.method}`, {
        allow: match.allow.join(", "),
      });
    }
    writeJsonError(res, 404, status.NOT_FOUND, `no route for ${req.method} ${requestPath}`);
  };

  const server = http.createServer((req, res) => {
    const startedAt = Date.now();
    busy.add(req.socket);
    const requestId = requestIdOf(req);
    res.setHeader(REQUEST_ID_KEY, requestId);
    let grpcMethod: string | undefined;
    const deadline = requestDeadline(req.headers, startedAt);
    const call: GatewayCall = {
      requestId,
      deadline: deadline instanceof GatewayError ? undefined : deadline,
      async admit(method) {
        grpcMethod = method.path;
        // A malformed deadline header is refused here, once the method is known, so that each
        // handler answers it in its own protocol (gRPC-Web: grpc-status 3).
        if (deadline instanceof GatewayError) throw deadline;
        const metadata = options.guard ? await options.guard.admit(method, req) : new Metadata();
        metadata.set(REQUEST_ID_KEY, requestId);
        forwardTraceContext(req, metadata);
        return metadata;
      },
    };
    res.once("close", () => {
      busy.delete(req.socket);
      const fields = {
        method: req.method,
        path: splitUrl(req.url).path,
        status: res.statusCode,
        durationMs: Date.now() - startedAt,
        requestId,
        grpcMethod,
        ...(res.writableFinished ? {} : { aborted: true }),
      };
      if (res.statusCode >= 500) logger.warn(fields, "http request");
      else logger.info(fields, "http request");
    });
    handle(req, res, call).catch((error: unknown) => {
      logger.error({ err: error, requestId, grpcMethod }, "gateway request failed unexpectedly");
      writeGatewayError(res, new GatewayError(500, status.INTERNAL, "internal error"));
    });
  });

  // Each connection, and those with a request in flight, for close().
  const sockets = new Set<Socket>();
  const busy = new Set<Socket>();
  server.on("connection", (socket: Socket) => {
    sockets.add(socket);
    socket.once("close", () => sockets.delete(socket));
  });
  return {
    server,
    listen(port, host) {
      return new Promise((resolve, reject) => {
        server.once("error", reject);
        server.listen(port, host, () => {
          server.off("error", reject);
          resolve((server.address() as AddressInfo).port);
        });
      });
    },
    close() {
      return new Promise((resolve) => {
        if (!server.listening) return resolve();
        const timer = setTimeout(() => server.closeAllConnections(), CLOSE_GRACE_MS);
        server.close(() => {
          clearTimeout(timer);
          resolve();
        });
        server.closeIdleConnections();
        // closeIdleConnections leaves a connection that never sent a request (a client's spare
        // one) to the headers timeout: close those too.
        for (const socket of sockets) if (!busy.has(socket)) socket.destroy();
      });
    },
  };
}

/**
 * The caller's W3C Trace Context (`traceparent`, `tracestate`), carried on to the backend: a
 * traced gateway's client span is then the child of the caller's span (tracing.ts), and an
 * untraced one passes the caller's context through unchanged. One header each, printable ASCII.
 */
function forwardTraceContext(req: http.IncomingMessage, metadata: Metadata): void {
  for (const key of [TRACEPARENT_KEY, TRACESTATE_KEY]) {
    const value = req.headers[key];
    if (typeof value === "string" && /^[\x20-\x7e]{1,512}$/.test(value)) metadata.set(key, value);
  }
}

/** The caller's x-request-id when the kit's rule accepts it (mesh/request-id.ts), else a new one. */
function requestIdOf(req: http.IncomingMessage): string {
  return acceptableRequestId(req.headers[REQUEST_ID_KEY]);
}

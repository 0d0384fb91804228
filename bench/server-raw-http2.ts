import * as http2 from "node:http2";
import type { AddressInfo } from "node:net";
import { CatalogServiceService } from "../generated/ts/shop/catalog/v1/catalog";
import { BENCH_PRODUCTS } from "./bench-catalog";
import { decodeGrpcFrame, encodeGrpcFrame } from "./grpc-frame";

/**
 * B0: GetProduct answered by node:http2 alone: read the gRPC frame, decode the request and encode
 * the response with the same ts-proto serializers as the real servers, send headers, one frame and
 * `grpc-status` trailers. No routing, interceptors or call objects: the ceiling a Node core reaches.
 * Every other path gets UNIMPLEMENTED, as a gRPC server would answer.
 */

const GET_PRODUCT = CatalogServiceService.getProduct;
const GRPC_STATUS_NOT_FOUND = "5";
const GRPC_STATUS_UNIMPLEMENTED = "12";
const GRPC_STATUS_INVALID_ARGUMENT = "3";

/** A started HTTP/2 bench server (raw, or connect-node's) and how to stop it. */
export interface RawHttp2Server {
  port: number;
  close(): Promise<void>;
}

/**
 * Listens with `server` on 127.0.0.1:`port` (0 picks one); its `close` destroys every open session
 * first, as node:http2's close waits for them to end.
 */
export async function listenHttp2(server: http2.Http2Server, port: number): Promise<RawHttp2Server> {
  const sessions = new Set<http2.ServerHttp2Session>();
  server.on("session", (session) => {
    sessions.add(session);
    session.once("close", () => sessions.delete(session));
  });
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(port, "127.0.0.1", () => resolve());
  });
  return {
    port: (server.address() as AddressInfo).port,
    close: () =>
      new Promise<void>((resolve) => {
        for (const session of sessions) session.destroy();
        server.close(() => resolve());
      }),
  };
}

/** Starts the raw server on 127.0.0.1:`port` (0 picks one). */
export async function startRawHttp2Server(port = 0): Promise<RawHttp2Server> {
  const products = new Map(BENCH_PRODUCTS.map((product) => [product.id, product]));
  const server = http2.createServer();
  server.on("stream", (stream, headers) => {
    const chunks: Buffer[] = [];
    stream.on("data", (chunk: Buffer) => chunks.push(chunk));
    stream.on("end", () => {
      if (headers[":path"] !== GET_PRODUCT.path) return answer(stream, GRPC_STATUS_UNIMPLEMENTED);
      const message = decodeGrpcFrame(chunks.length === 1 ? chunks[0] : Buffer.concat(chunks));
      if (!message) return answer(stream, GRPC_STATUS_INVALID_ARGUMENT);
      const product = products.get(GET_PRODUCT.requestDeserialize(message).id);
      if (!product) return answer(stream, GRPC_STATUS_NOT_FOUND);
      answer(stream, "0", encodeGrpcFrame(GET_PRODUCT.responseSerialize({ product })));
    });
    stream.on("error", () => stream.destroy());
  });
  return listenHttp2(server, port);
}

function answer(stream: http2.ServerHttp2Stream, grpcStatus: string, frame?: Buffer): void {
  if (stream.destroyed) return;
  stream.respond({ ":status": 200, "content-type": "application/grpc" }, { waitForTrailers: true });
  stream.once("wantTrailers", () => stream.sendTrailers({ "grpc-status": grpcStatus }));
  stream.end(frame);
}

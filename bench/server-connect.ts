import * as fs from "node:fs";
import * as http2 from "node:http2";
import { create, createFileRegistry, fromBinary, toBinary } from "@bufbuild/protobuf";
import type {
  DescMessage,
  DescMethod,
  DescMethodServerStreaming,
  DescMethodUnary,
  DescService,
  Message,
} from "@bufbuild/protobuf";
import { FileDescriptorSetSchema } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError } from "@connectrpc/connect";
import type { ConnectRouter } from "@connectrpc/connect";
import { connectNodeAdapter } from "@connectrpc/connect-node";
import { GetProductResponse, SearchProductsResponse } from "../generated/ts/shop/catalog/v1/catalog";
import type { GetProductRequest, Product, SearchProductsRequest } from "../generated/ts/shop/catalog/v1/catalog";
import { MAX_QUERY_LENGTH } from "../services/catalog/catalog-service";
import { BENCH_PRODUCTS } from "./bench-catalog";
import { DESCRIPTOR_SET } from "./ghz";
import { listenHttp2 } from "./server-raw-http2";
import type { RawHttp2Server } from "./server-raw-http2";

/**
 * The TypeScript peer of B1, B5 and B11: the bench catalog served by @connectrpc/connect-node over
 * node:http2 (h2c), the gRPC protocol only (gRPC-Web and Connect off), as the connect-node README
 * mounts it: `http2.createServer(connectNodeAdapter({ routes }))` with Node's default settings,
 * except that it never compresses a response (grpc-js servers do not either).
 *
 * Nothing is generated for it: the service comes from the descriptor set `make gen` writes, read
 * with @bufbuild/protobuf (the runtime Connect v2 uses) as cli/gateway/methods.ts reads it, and
 * messages are protobuf-es messages of those descriptors, encoded by protobuf-es. The products are
 * BENCH_PRODUCTS and the handlers do what services/catalog's do (a map look-up; a case-insensitive
 * substring match over name, description and tags, with the same validation), so the answers are
 * the same bytes as the grpc-js servers' (checked at start) and the difference is the RPC stack.
 */

const SERVICE_NAME = "shop.catalog.v1.CatalogService";

/** Starts the connect-node server on 127.0.0.1:`port` (0 picks one). */
export async function startConnectServer(port = 0): Promise<RawHttp2Server> {
  const service = loadCatalogService();
  const server = http2.createServer(
    connectNodeAdapter({
      routes: catalogRoutes(service),
      grpc: true,
      grpcWeb: false,
      connect: false,
      // grpc-js servers never compress a response; connect-node gzips any of 1 KiB or more for a
      // client that accepts gzip, as grpc-go (ghz) says it does. Requests may still come compressed.
      compressMinBytes: Number.POSITIVE_INFINITY,
    }),
  );
  return listenHttp2(server, port);
}

/** CatalogService as a DescService, from the repository's descriptor set. */
function loadCatalogService(): DescService {
  const registry = createFileRegistry(fromBinary(FileDescriptorSetSchema, fs.readFileSync(DESCRIPTOR_SET)));
  const service = registry.getService(SERVICE_NAME);
  if (!service) throw new Error(`bench connect server: ${SERVICE_NAME} not in ${DESCRIPTOR_SET}; run \`make gen\``);
  return service;
}

/** The routes of the bench catalog: GetProduct and SearchProducts over BENCH_PRODUCTS. */
function catalogRoutes(service: DescService): (router: ConnectRouter) => void {
  const getProduct = methodOf(service, "getProduct", "unary") as DescMethodUnary;
  const searchProducts = methodOf(service, "searchProducts", "server_streaming") as DescMethodServerStreaming;
  const productSchema = getProduct.output.field.product?.message;
  if (!productSchema) throw new Error(`bench connect server: ${getProduct.output.typeName} has no message field product`);
  // Sorted by id as services/catalog sorts them, each paired with its protobuf-es message.
  const sorted = [...BENCH_PRODUCTS].sort((a, b) => a.id.localeCompare(b.id));
  const messages = new Map(sorted.map((product) => [product, productMessage(productSchema, product)]));
  const byId = new Map(sorted.map((product) => [product.id, messages.get(product)]));
  checkSameBytes(getProduct.output, searchProducts.output, messages);

  return (router) =>
    router
      .rpc(getProduct, (request) => {
        const { id } = request as Message & GetProductRequest;
        if (id === "") throw new ConnectError("id: is required", Code.InvalidArgument);
        const product = byId.get(id);
        if (!product) throw new ConnectError(`product ${JSON.stringify(id)} not found`, Code.NotFound);
        return { product };
      })
      .rpc(searchProducts, async function* (request) {
        const { query, limit } = request as Message & SearchProductsRequest;
        if (query.trim() === "") throw new ConnectError("query: is required", Code.InvalidArgument);
        if (query.length > MAX_QUERY_LENGTH) {
          throw new ConnectError(`query: must be at most ${MAX_QUERY_LENGTH} characters`, Code.InvalidArgument);
        }
        if (limit < 0) throw new ConnectError("limit: must be >= 0", Code.InvalidArgument);
        const needle = query.toLowerCase();
        const matches = sorted.filter((product) =>
          [product.name, product.description, ...product.tags].some((text) => text.toLowerCase().includes(needle)),
        );
        for (const product of limit > 0 ? matches.slice(0, limit) : matches) yield { product: messages.get(product) };
      });
}

/** The method `localName` of `service`, which must be of `kind`. */
function methodOf(service: DescService, localName: string, kind: DescMethod["methodKind"]): DescMethod {
  const method = service.method[localName] as DescMethod | undefined;
  if (method?.methodKind !== kind) throw new Error(`bench connect server: ${service.typeName} has no ${kind} ${localName}`);
  return method;
}

/** The protobuf-es message of a ts-proto Product (int64 is a bigint in protobuf-es, a number in ts-proto). */
function productMessage(schema: DescMessage, product: Product): Message {
  return create(schema, { ...product, priceCents: BigInt(product.priceCents) });
}

/**
 * Throws unless protobuf-es encodes every answer to the same bytes as the ts-proto codec of the
 * grpc-js servers: a difference in size would be a difference in work, not in the RPC stack.
 */
function checkSameBytes(getOutput: DescMessage, searchOutput: DescMessage, messages: ReadonlyMap<Product, Message>): void {
  for (const [product, message] of messages) {
    const pairs: [Uint8Array, Uint8Array][] = [
      [toBinary(getOutput, create(getOutput, { product: message })), GetProductResponse.encode({ product }).finish()],
      [toBinary(searchOutput, create(searchOutput, { product: message })), SearchProductsResponse.encode({ product }).finish()],
    ];
    for (const [connect, grpcJs] of pairs) {
      if (!Buffer.from(connect).equals(Buffer.from(grpcJs))) {
        throw new Error(`bench connect server: protobuf-es encodes ${product.id} in ${connect.length} bytes, ts-proto in ${grpcJs.length}`);
      }
    }
  }
}

import * as assert from "node:assert/strict";
import type * as http from "node:http";
import { Metadata, status } from "@grpc/grpc-js";
import {
  GetProductRequest,
  GetProductResponse,
  SearchProductsRequest,
  SearchProductsResponse,
} from "../../generated/ts/shop/catalog/v1/catalog";
import { GatewayError } from "../../cli/gateway/errors";
import { GRPC_WEB_ALLOWED_HEADERS, PREFLIGHT_MAX_AGE_S } from "../../cli/gateway/grpc-web";
import { startShop, shopClients, stalledCatalog } from "../support/shop";
import type { Shop } from "../support/shop";
import { startTestGateway } from "./gateway-fixture";
import type { TestGateway } from "./gateway-fixture";

/**
 * The gateway (createGateway) with Backends to the shop's servers; its guard refuses a request
 * that carries `x-test-refuse`, as auth would, and admits any other.
 */
function startRefusingGateway(shop: Pick<Shop, "catalogAddress" | "ordersAddress" | "log">, options: { corsOrigins?: string[] } = {}): Promise<TestGateway> {
  const guard = {
    async admit(_method: unknown, req: http.IncomingMessage): Promise<Metadata> {
      if (req.headers["x-test-refuse"] !== undefined) {
        throw new GatewayError(401, status.UNAUTHENTICATED, "a bearer token is required", { "www-authenticate": "Bearer" });
      }
      return new Metadata();
    },
  };
  return startTestGateway(shop.log.logger, { catalog: shop.catalogAddress, orders: shop.ordersAddress }, { guard, ...options });
}

/** What a gRPC-Web answer held: HTTP status and headers, data frames, and the call's status. */
interface GrpcWebAnswer {
  httpStatus: number;
  headers: Headers;
  messages: Buffer[];
  /** From the trailer frame, or from the HTTP headers for a trailers-only answer. */
  trailers: Record<string, string>;
  grpcStatus: number;
  /** grpc-message, percent-decoded. */
  grpcMessage: string;
  isTrailersOnly: boolean;
}

/** A gRPC-Web frame: flag byte, 4-byte big-endian length, payload. */
function frame(flag: number, payload: Uint8Array): Buffer {
  const header = Buffer.alloc(5);
  header[0] = flag;
  header.writeUInt32BE(payload.length, 1);
  return Buffer.concat([header, payload]);
}

/** Splits a response body into data messages and the trailers of its trailer frame (which must come last). */
function parseBody(body: Buffer): { messages: Buffer[]; trailers: Record<string, string> | undefined } {
  const messages: Buffer[] = [];
  let trailers: Record<string, string> | undefined;
  for (let offset = 0; offset < body.length; ) {
    assert.equal(trailers, undefined, "nothing may follow the trailer frame");
    const flag = body[offset];
    const length = body.readUInt32BE(offset + 1);
    const payload = body.subarray(offset + 5, offset + 5 + length);
    assert.equal(payload.length, length, "a frame is cut short");
    if (flag === 0x80) {
      trailers = {};
      for (const line of payload.toString("latin1").split("\r\n").filter((text) => text !== "")) {
        const colon = line.indexOf(":");
        trailers[line.slice(0, colon).trim().toLowerCase()] = line.slice(colon + 1).trim();
      }
    } else {
      assert.equal(flag, 0x00, `unexpected frame flag ${flag}`);
      messages.push(payload);
    }
    offset += 5 + length;
  }
  return { messages, trailers };
}

/** Text mode: the body is base64, possibly as several padded chunks. */
function decodeText(text: string): Buffer {
  return Buffer.concat((text.match(/[^=]+={0,2}/g) ?? []).map((run) => Buffer.from(run, "base64")));
}

async function grpcWeb(
  gateway: TestGateway,
  path: string,
  body: Uint8Array | string,
  options: { isText?: boolean; headers?: Record<string, string> } = {},
): Promise<GrpcWebAnswer> {
  const isText = options.isText ?? false;
  const response = await fetch(`${gateway.url}${path}`, {
    method: "POST",
    headers: {
      "content-type": isText ? "application/grpc-web-text" : "application/grpc-web+proto",
      "x-grpc-web": "1",
      ...options.headers,
    },
    body: typeof body === "string" ? body : Buffer.from(body),
  });
  const raw = Buffer.from(await response.arrayBuffer());
  if (isText) assert.match(raw.toString("latin1"), /^[A-Za-z0-9+/=]*$/, "a text-mode answer is base64");
  const { messages, trailers } = parseBody(isText ? decodeText(raw.toString("latin1")) : raw);
  const isTrailersOnly = trailers === undefined;
  const found = trailers ?? {
    "grpc-status": response.headers.get("grpc-status") ?? "",
    "grpc-message": response.headers.get("grpc-message") ?? "",
  };
  assert.match(found["grpc-status"], /^\d+$/, "every answer carries grpc-status");
  return {
    httpStatus: response.status,
    headers: response.headers,
    messages,
    trailers: found,
    grpcStatus: Number(found["grpc-status"]),
    grpcMessage: decodeURIComponent(found["grpc-message"] ?? ""),
    isTrailersOnly,
  };
}

function getProductFrame(id: string): Buffer {
  return frame(0x00, GetProductRequest.encode({ id }).finish());
}

const GET_PRODUCT = "/shop.catalog.v1.CatalogService/GetProduct";
const SEARCH_PRODUCTS = "/shop.catalog.v1.CatalogService/SearchProducts";

describe("gateway gRPC-Web", function () {
  let shop: Shop;
  let gateway: TestGateway;

  before(async () => {
    shop = await startShop();
    gateway = await startRefusingGateway(shop, { corsOrigins: ["http://page.example"] });
  });

  after(async () => {
    await gateway?.close();
    await shop?.stop();
  });

  it("answers a unary GetProduct in binary mode with one data frame and grpc-status 0 in the trailer frame", async () => {
    const answer = await grpcWeb(gateway, GET_PRODUCT, getProductFrame("sku-1001"));
    assert.equal(answer.httpStatus, 200);
    assert.equal(answer.headers.get("content-type"), "application/grpc-web+proto");
    assert.equal(answer.isTrailersOnly, false);
    assert.equal(answer.grpcStatus, status.OK);
    assert.equal(answer.messages.length, 1);
    const { product } = GetProductResponse.decode(answer.messages[0]);
    assert.equal(product?.id, "sku-1001");
    assert.equal(product?.name, "Espresso beans 1 kg");
  });

  it("answers GetProduct in text mode: a base64 request and a base64 answer", async () => {
    const answer = await grpcWeb(gateway, GET_PRODUCT, getProductFrame("sku-1003").toString("base64"), { isText: true });
    assert.equal(answer.headers.get("content-type"), "application/grpc-web-text+proto");
    assert.equal(answer.grpcStatus, status.OK);
    assert.equal(answer.messages.length, 1);
    assert.equal(GetProductResponse.decode(answer.messages[0]).product?.name, "Green tea 100 g");
  });

  it("streams SearchProducts as one data frame per match, then the trailer frame", async () => {
    const request = frame(0x00, SearchProductsRequest.encode({ query: "tea", limit: 0 }).finish());
    const answer = await grpcWeb(gateway, SEARCH_PRODUCTS, request);
    assert.equal(answer.grpcStatus, status.OK);
    const ids = answer.messages.map((message) => SearchProductsResponse.decode(message).product?.id);
    // The oracle: the same search over gRPC.
    const clients = shopClients(shop);
    try {
      const expected: string[] = [];
      await new Promise<void>((resolve, reject) => {
        const stream = clients.catalog.searchProducts({ query: "tea", limit: 0 });
        stream.on("data", (message: SearchProductsResponse) => expected.push(message.product?.id ?? ""));
        stream.on("error", reject);
        stream.on("end", resolve);
      });
      assert.ok(expected.length >= 3, "the seed has several teas");
      assert.deepEqual(ids, expected);
    } finally {
      clients.close();
    }
  });

  it("streams SearchProducts in text mode too, each chunk decodable", async () => {
    const request = frame(0x00, SearchProductsRequest.encode({ query: "coffee", limit: 3 }).finish());
    const answer = await grpcWeb(gateway, SEARCH_PRODUCTS, request.toString("base64"), { isText: true });
    assert.equal(answer.grpcStatus, status.OK);
    assert.equal(answer.messages.length, 3);
  });

  it("ends GetProduct of an unknown id with grpc-status 5 and the catalog's message, trailers-only with HTTP 200", async () => {
    const answer = await grpcWeb(gateway, GET_PRODUCT, getProductFrame("sku-9999"));
    assert.equal(answer.httpStatus, 200);
    assert.equal(answer.isTrailersOnly, true);
    assert.equal(answer.messages.length, 0);
    assert.equal(answer.grpcStatus, status.NOT_FOUND);
    assert.equal(answer.grpcMessage, 'product "sku-9999" not found');
  });

  it("percent-encodes a grpc-message that is not printable ASCII", async () => {
    const answer = await grpcWeb(gateway, GET_PRODUCT, getProductFrame("thé-100%"));
    assert.equal(answer.grpcStatus, status.NOT_FOUND);
    assert.equal(answer.headers.get("grpc-message"), "product \"th%C3%A9-100%25\" not found");
    assert.equal(answer.grpcMessage, 'product "thé-100%" not found');
  });

  it("ends a stream that fails before its first message trailers-only, with the status and message", async () => {
    const request = frame(0x00, SearchProductsRequest.encode({ query: " ", limit: 0 }).finish());
    const answer = await grpcWeb(gateway, SEARCH_PRODUCTS, request);
    assert.equal(answer.isTrailersOnly, true);
    assert.equal(answer.grpcStatus, status.INVALID_ARGUMENT);
    assert.equal(answer.grpcMessage, "query: is required");
  });

  it("answers an unknown method with grpc-status 12 UNIMPLEMENTED naming it", async () => {
    const answer = await grpcWeb(gateway, "/shop.catalog.v1.CatalogService/DeleteEverything", getProductFrame("sku-1001"));
    assert.equal(answer.httpStatus, 200);
    assert.equal(answer.grpcStatus, status.UNIMPLEMENTED);
    assert.match(answer.grpcMessage, /unknown method \/shop\.catalog\.v1\.CatalogService\/DeleteEverything/);
  });

  it("answers a frame whose length overruns the body with grpc-status 13 saying so", async () => {
    const truncated = getProductFrame("sku-1001").subarray(0, 8);
    const answer = await grpcWeb(gateway, GET_PRODUCT, truncated);
    assert.equal(answer.httpStatus, 200);
    assert.equal(answer.grpcStatus, status.INTERNAL);
    assert.match(answer.grpcMessage, /malformed gRPC-Web request: the frame at offset 0 declares \d+ bytes but 3 follow/);
  });

  it("answers an empty body, two messages and a non-base64 text body with grpc-status 13", async () => {
    const empty = await grpcWeb(gateway, GET_PRODUCT, new Uint8Array());
    assert.equal(empty.grpcStatus, status.INTERNAL);
    assert.match(empty.grpcMessage, /takes one request message, got 0/);
    const two = await grpcWeb(gateway, GET_PRODUCT, Buffer.concat([getProductFrame("a"), getProductFrame("b")]));
    assert.match(two.grpcMessage, /takes one request message, got 2/);
    const text = await grpcWeb(gateway, GET_PRODUCT, "not base64!", { isText: true });
    assert.equal(text.grpcStatus, status.INTERNAL);
    assert.match(text.grpcMessage, /not base64/);
  });

  it("answers a message that is not the method's input type with grpc-status 3 naming the type", async () => {
    // Field 1 as a varint where GetProductRequest.id is a string.
    const answer = await grpcWeb(gateway, GET_PRODUCT, frame(0x00, Buffer.from([0x08, 0x01])));
    assert.equal(answer.grpcStatus, status.INVALID_ARGUMENT);
    assert.match(answer.grpcMessage, /not a valid shop\.catalog\.v1\.GetProductRequest/);
  });

  it("answers a compressed request message with grpc-status 12", async () => {
    const answer = await grpcWeb(gateway, GET_PRODUCT, frame(0x01, GetProductRequest.encode({ id: "sku-1001" }).finish()));
    assert.equal(answer.grpcStatus, status.UNIMPLEMENTED);
    assert.match(answer.grpcMessage, /compressed/);
  });

  it("answers a malformed grpc-timeout with grpc-status 3", async () => {
    const answer = await grpcWeb(gateway, GET_PRODUCT, getProductFrame("sku-1001"), { headers: { "grpc-timeout": "soon" } });
    assert.equal(answer.httpStatus, 200);
    assert.equal(answer.grpcStatus, status.INVALID_ARGUMENT);
  });

  it("answers a text-mode body over the 4 MiB limit with grpc-status 8", async () => {
    // Chunked (no content-length), so the limit is met while reading, inside the gRPC-Web handler.
    const big = Buffer.alloc(4 * 1024 * 1024 + 3, "A").toString("latin1");
    const chunks = new ReadableStream<Uint8Array>({
      start(controller) {
        controller.enqueue(Buffer.from(big));
        controller.close();
      },
    });
    const response = await fetch(`${gateway.url}${GET_PRODUCT}`, {
      method: "POST",
      headers: { "content-type": "application/grpc-web-text" },
      body: chunks,
      duplex: "half",
    } as RequestInit);
    await response.arrayBuffer();
    assert.equal(response.status, 200);
    assert.equal(response.headers.get("grpc-status"), String(status.RESOURCE_EXHAUSTED));
  });

  it("answers a CORS preflight with 204, POST, the gRPC-Web request headers and a max age", async () => {
    const response = await fetch(`${gateway.url}${GET_PRODUCT}`, {
      method: "OPTIONS",
      headers: {
        origin: "http://page.example",
        "access-control-request-method": "POST",
        "access-control-request-headers": "content-type,x-grpc-web,x-user-agent",
      },
    });
    assert.equal(response.status, 204);
    assert.equal(response.headers.get("access-control-allow-origin"), "http://page.example");
    assert.equal(response.headers.get("access-control-allow-methods"), "POST");
    const allowed = (response.headers.get("access-control-allow-headers") ?? "").split(/,\s*/);
    for (const header of ["content-type", "x-grpc-web", "x-user-agent", "grpc-timeout", "authorization", "x-request-id"]) {
      assert.ok(allowed.includes(header), `${header} is allowed`);
    }
    assert.deepEqual(allowed, GRPC_WEB_ALLOWED_HEADERS);
    assert.equal(response.headers.get("access-control-max-age"), String(PREFLIGHT_MAX_AGE_S));
    assert.match(response.headers.get("vary") ?? "", /Origin/);
  });

  it("answers a preflight for a JSON API path with the JSON API's methods", async () => {
    const response = await fetch(`${gateway.url}/v1/products/sku-1001`, {
      method: "OPTIONS",
      headers: { origin: "http://page.example", "access-control-request-method": "GET" },
    });
    assert.equal(response.status, 204);
    assert.equal(response.headers.get("access-control-allow-origin"), "http://page.example");
    assert.equal(response.headers.get("access-control-allow-methods"), "GET, POST, PUT, PATCH, DELETE");
    assert.match(response.headers.get("access-control-allow-headers") ?? "", /x-timeout-ms/);
  });

  it("lets a configured origin read grpc-status, grpc-message and x-request-id, and gives another origin no CORS grant", async () => {
    const allowed = await grpcWeb(gateway, GET_PRODUCT, getProductFrame("sku-1001"), { headers: { origin: "http://page.example" } });
    assert.equal(allowed.headers.get("access-control-allow-origin"), "http://page.example");
    assert.deepEqual((allowed.headers.get("access-control-expose-headers") ?? "").split(/,\s*/), ["grpc-status", "grpc-message", "x-request-id"]);
    const other = await grpcWeb(gateway, GET_PRODUCT, getProductFrame("sku-1001"), { headers: { origin: "http://evil.example" } });
    assert.equal(other.headers.get("access-control-allow-origin"), null);
    const preflight = await fetch(`${gateway.url}${GET_PRODUCT}`, {
      method: "OPTIONS",
      headers: { origin: "http://evil.example", "access-control-request-method": "POST" },
    });
    assert.equal(preflight.headers.get("access-control-allow-origin"), null);
  });

  it("echoes the caller's x-request-id and sends it to the backend", async () => {
    const answer = await grpcWeb(gateway, GET_PRODUCT, getProductFrame("sku-1001"), { headers: { "x-request-id": "grpc-web-test-42" } });
    assert.equal(answer.headers.get("x-request-id"), "grpc-web-test-42");
    assert.ok(
      shop.log.lines.some((line) => line.component === "server" && line.requestId === "grpc-web-test-42"),
      "the catalog logged the call under the caller's request id",
    );
  });

  it("refuses a call the guard does not admit with grpc-status 16 and HTTP 200, before the backend", async () => {
    const answer = await grpcWeb(gateway, GET_PRODUCT, getProductFrame("sku-1001"), {
      headers: { "x-test-refuse": "unauthenticated", "x-request-id": "grpc-web-refused-1" },
    });
    assert.equal(answer.httpStatus, 200);
    assert.equal(answer.grpcStatus, status.UNAUTHENTICATED);
    assert.equal(answer.grpcMessage, "a bearer token is required");
    assert.equal(answer.headers.get("www-authenticate"), "Bearer");
    assert.ok(!shop.log.lines.some((line) => line.component === "server" && line.requestId === "grpc-web-refused-1"), "the backend was not called");
  });

  describe("grpc-timeout", function () {
    let stalled: Awaited<ReturnType<typeof stalledCatalog>>;
    let stalledGateway: TestGateway;

    before(async () => {
      stalled = await stalledCatalog(shop.log.logger);
      stalledGateway = await startRefusingGateway({ ...shop, catalogAddress: stalled.address });
    });

    after(async () => {
      await stalledGateway?.close();
      await stalled?.server.drain();
    });

    it("ends a call the backend does not answer with grpc-status 4 once grpc-timeout has passed", async () => {
      const startedAt = Date.now();
      const answer = await grpcWeb(stalledGateway, GET_PRODUCT, getProductFrame("sku-1001"), { headers: { "grpc-timeout": "300m" } });
      assert.equal(answer.grpcStatus, status.DEADLINE_EXCEEDED);
      assert.equal(stalled.deadlines.length, 1);
      assert.ok(stalled.deadlines[0] - startedAt <= 1_000, "the backend call carried the caller's deadline");
    });
  });
});

import assert from "node:assert/strict";
import * as http2 from "node:http2";
import { Client, Metadata, credentials, status } from "@grpc/grpc-js";
import type { ServiceError } from "@grpc/grpc-js";
import { CatalogServiceClient, CatalogServiceService } from "../../generated/ts/shop/catalog/v1/catalog";
import type { GetProductRequest, GetProductResponse } from "../../generated/ts/shop/catalog/v1/catalog";
import { createClient } from "../../mesh/client";
import { INTERNAL_DETAILS } from "../../mesh/errors";
import { createServer } from "../../mesh/server";
import type { MeshServer } from "../../mesh/server";
import { catalogService } from "../../services/catalog/catalog-service";
import { callUnary, collectStream } from "../support/calls";
import { captureLog } from "../support/log-capture";
import type { CapturedLog } from "../support/log-capture";

const GET_PRODUCT = "/shop.catalog.v1.CatalogService/GetProduct";

/** Sends raw bytes as the request message of `path`, bypassing any serializer. */
function rawCall(client: Client, path: string, payload: Buffer, metadata = new Metadata()): Promise<ServiceError | null> {
  return new Promise((resolve) => {
    client.makeUnaryRequest(
      path,
      (buffer: Buffer) => buffer,
      (buffer: Buffer) => buffer,
      payload,
      metadata,
      { deadline: Date.now() + 5_000 },
      (error) => resolve(error),
    );
  });
}

/** Sends GetProduct({id: "sku-1001"}) as raw HTTP/2 with extra headers; resolves to grpc-status. */
function rawHttp2(session: http2.ClientHttp2Session, extra: Record<string, string>): Promise<string | undefined> {
  return new Promise((resolve, reject) => {
    const stream = session.request({
      ":method": "POST",
      ":path": GET_PRODUCT,
      "content-type": "application/grpc",
      te: "trailers",
      ...extra,
    });
    let grpcStatus: string | undefined;
    stream.on("response", (headers) => {
      grpcStatus = headers["grpc-status"] as string | undefined;
    });
    stream.on("trailers", (trailers) => {
      grpcStatus = trailers["grpc-status"] as string | undefined;
    });
    stream.on("data", () => undefined);
    stream.on("end", () => resolve(grpcStatus));
    stream.on("error", reject);
    // Compressed-flag 0, length 10, then field 1 = "sku-1001".
    stream.end(Buffer.from([0, 0, 0, 0, 10, 0x0a, 8, ...Buffer.from("sku-1001")]));
  });
}

/** Deterministic pseudo-random bytes (mulberry32), so a failure can be replayed. */
function seededBytes(seed: number, length: number): Buffer {
  let state = seed >>> 0;
  const bytes = Buffer.alloc(length);
  for (let index = 0; index < length; index += 1) {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    bytes[index] = ((t ^ (t >>> 14)) >>> 0) & 0xff;
  }
  return bytes;
}

describe("server under bad input", () => {
  let server: MeshServer;
  let log: CapturedLog;
  let raw: Client;
  let catalog: CatalogServiceClient;

  /** The server still answers a well-formed call correctly. */
  async function assertStillServing(): Promise<void> {
    const { response, error } = await callUnary(catalog.getProduct, catalog, { id: "sku-1001" });
    assert.equal(error, undefined);
    assert.equal(response?.product?.id, "sku-1001");
  }

  before(async () => {
    log = captureLog();
    server = createServer({ name: "catalog", logger: log.logger, limits: { maxReceiveMessageBytes: 64 * 1024 } });
    server.addService(CatalogServiceService, {
      ...catalogService(),
      // A handler with a bug: its message must reach the log, never the caller.
      listProducts: () => {
        throw new Error("connection string postgres://admin:hunter2@db");
      },
    });
    const address = `127.0.0.1:${await server.listen()}`;
    raw = new Client(address, credentials.createInsecure());
    catalog = createClient(CatalogServiceClient, address, { logger: log.logger });
  });

  after(async () => {
    raw.close();
    catalog.close();
    await server.drain(1_000);
  });

  it("answers an unknown method with UNIMPLEMENTED", async () => {
    assert.equal((await rawCall(raw, "/shop.catalog.v1.CatalogService/DeleteEverything", Buffer.alloc(0)))?.code, status.UNIMPLEMENTED);
    assert.equal((await rawCall(raw, "/no.such.v1.Service/Method", Buffer.alloc(0)))?.code, status.UNIMPLEMENTED);
    await assertStillServing();
  });

  it("answers a message that is not valid protobuf with INTERNAL", async () => {
    // Field 1 as a length-delimited value whose length runs past the end of the message.
    const error = await rawCall(raw, GET_PRODUCT, Buffer.from([0x0a, 0xff, 0xff, 0xff, 0x0f, 0x01]));
    assert.equal(error?.code, status.INTERNAL);
    assert.match(error?.details ?? "", /deserializ/i);
    await assertStillServing();
  });

  it("survives 300 random byte strings as messages, answering each with a status", async () => {
    const codes = new Set<number>();
    for (let seed = 1; seed <= 300; seed += 1) {
      const error = await rawCall(raw, GET_PRODUCT, seededBytes(seed, 1 + (seed % 97)));
      codes.add(error?.code ?? status.OK);
    }
    // Random bytes that happen to decode are just requests for unknown ids (NOT_FOUND) or have no
    // id (INVALID_ARGUMENT); the rest fail to decode (INTERNAL). Nothing else, and no crash.
    for (const code of codes) {
      assert.ok([status.INTERNAL, status.NOT_FOUND, status.INVALID_ARGUMENT].includes(code), `unexpected ${status[code]}`);
    }
    assert.ok(codes.has(status.INTERNAL));
    await assertStillServing();
  });

  it("refuses a message over the receive limit with RESOURCE_EXHAUSTED", async () => {
    const { error } = await callUnary(catalog.getProduct, catalog, { id: "x".repeat(100 * 1024) });
    assert.equal(error?.code, status.RESOURCE_EXHAUSTED);
    await assertStillServing();
  });

  it("answers invalid fields with INVALID_ARGUMENT naming the field", async () => {
    const { error } = await callUnary(catalog.getProduct, catalog, { id: "" });
    assert.equal(error?.code, status.INVALID_ARGUMENT);
    assert.match(error?.details ?? "", /^id: /);
    const stream = await collectStream(catalog.searchProducts({ query: "tea", limit: -1 }));
    assert.equal(stream.error?.code, status.INVALID_ARGUMENT);
    assert.match(stream.error?.details ?? "", /^limit: /);
  });

  it("turns a handler exception into INTERNAL with generic details and logs the cause", async () => {
    const { error } = await callUnary(catalog.listProducts, catalog, { pageSize: 0, pageToken: "" });
    assert.equal(error?.code, status.INTERNAL);
    assert.equal(error?.details, INTERNAL_DETAILS);
    const logged = log.lines.find((line) => line.msg === "handler failed");
    assert.ok(logged, "the failure is logged");
    assert.match(JSON.stringify(logged.err), /hunter2/);
    assert.match(String((logged.err as { stack?: string }).stack), /server-bad-input/);
    await assertStillServing();
  });

  it("ignores garbage metadata and replaces an unacceptable request id", async () => {
    const metadata = new Metadata();
    metadata.set("x-request-id", "a".repeat(5000));
    metadata.set("x-garbage-bin", Buffer.from([0, 1, 2, 255, 254]));
    metadata.set("x-weird", "  spaces ~ and | symbols  ");
    const { response, headers } = await callUnary<GetProductRequest, GetProductResponse>(
      catalog.getProduct, catalog, { id: "sku-1002" }, {}, metadata,
    );
    assert.equal(response?.product?.id, "sku-1002");
    const echoed = String(headers?.get("x-request-id")[0]);
    assert.notEqual(echoed, "a".repeat(5000));
    assert.match(echoed, /^[0-9a-f-]{36}$/);
  });

  it("answers raw HTTP/2 requests with broken gRPC headers with a status, and keeps serving", async () => {
    const session = http2.connect(`http://127.0.0.1:${server.port}`);
    try {
      const seen: Record<string, string | undefined> = {};
      for (const headers of <Record<string, string>[]>[
        { "grpc-timeout": "forever" },
        { "grpc-encoding": "no-such-codec" },
        { "x-request-id": "has spaces and \u00e9" },
      ]) {
        seen[JSON.stringify(headers)] = await rawHttp2(session, headers);
      }
      assert.deepEqual(seen, {
        '{"grpc-timeout":"forever"}': String(status.INTERNAL),
        // An unknown encoding is harmless while the message itself is not compressed.
        '{"grpc-encoding":"no-such-codec"}': String(status.OK),
        // grpc-js drops a header value it cannot represent; the call goes on with a new id.
        '{"x-request-id":"has spaces and \u00e9"}': String(status.OK),
      });
    } finally {
      session.close();
    }
    await assertStillServing();
  });
});

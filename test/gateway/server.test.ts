import * as assert from "node:assert/strict";
import * as net from "node:net";
import { status } from "@grpc/grpc-js";
import { captureLog } from "../support/log-capture";
import type { CapturedLog } from "../support/log-capture";
import { startShop, stalledCatalog } from "../support/shop";
import type { Shop } from "../support/shop";
import { startTestGateway } from "./gateway-fixture";
import type { TestGateway } from "./gateway-fixture";

interface StatusBody {
  code: number;
  message: string;
  details: unknown[];
}

describe("gateway HTTP server", () => {
  let shop: Shop;
  let gatewayLog: CapturedLog;
  let gateway: TestGateway;

  before(async () => {
    shop = await startShop();
    // The gateway logs apart from the shop, so that a request id in the shop's lines is the backend's.
    gatewayLog = captureLog();
    gateway = await startTestGateway(gatewayLog.logger, { catalog: shop.catalogAddress, orders: shop.ordersAddress });
  });
  after(async () => {
    await gateway.close();
    await shop.stop();
  });

  it("answers 404 with a status body for an unknown route", async () => {
    const response = await fetch(`${gateway.url}/v2/nothing/here`);
    assert.equal(response.status, 404);
    const body = (await response.json()) as StatusBody;
    assert.equal(body.code, status.NOT_FOUND);
    assert.match(body.message, /no route for GET \/v2\/nothing\/here/);
    assert.deepEqual(body.details, []);
  });

  it("answers 405 with Allow for a known path and another method", async () => {
    const response = await fetch(`${gateway.url}/v1/products/sku-1001`, { method: "DELETE" });
    assert.equal(response.status, 405);
    assert.equal(response.headers.get("allow"), "GET");
    const orders = await fetch(`${gateway.url}/v1/orders`, { method: "PUT", body: "{}" });
    assert.equal(orders.status, 405);
    assert.equal(orders.headers.get("allow"), "GET, POST");
    assert.equal(((await orders.json()) as StatusBody).code, status.UNIMPLEMENTED);
    const health = await fetch(`${gateway.url}/healthz`, { method: "POST" });
    assert.equal(health.status, 405);
  });

  it("answers 413 for a body over 4 MiB, declared or streamed", async () => {
    const big = JSON.stringify({ customerId: "x".repeat(5 * 1024 * 1024) });
    const declared = await fetch(`${gateway.url}/v1/orders`, { method: "POST", headers: { "content-type": "application/json" }, body: big });
    assert.equal(declared.status, 413);
    assert.equal(((await declared.json()) as StatusBody).code, status.RESOURCE_EXHAUSTED);
    const chunk = Buffer.alloc(1024 * 1024, 0x20);
    const streamed = await fetch(`${gateway.url}/v1/orders`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: new ReadableStream({
        start(controller) {
          for (let i = 0; i < 5; i += 1) controller.enqueue(chunk);
          controller.close();
        },
      }),
      duplex: "half",
    } as RequestInit);
    assert.equal(streamed.status, 413);
    await streamed.arrayBuffer();
  });

  it("serves the OpenAPI document at /openapi.json", async () => {
    const response = await fetch(`${gateway.url}/openapi.json`);
    assert.equal(response.status, 200);
    assert.match(response.headers.get("content-type") ?? "", /^application\/json/);
    const document = (await response.json()) as { swagger: string; paths: Record<string, unknown> };
    assert.equal(document.swagger, "2.0");
    assert.ok(document.paths["/v1/products/{id}"]);
    assert.ok(document.paths["/v1/orders"]);
  });

  it("answers /healthz with 200", async () => {
    const response = await fetch(`${gateway.url}/healthz`);
    assert.equal(response.status, 200);
    assert.deepEqual(await response.json(), { status: "SERVING" });
  });

  it("echoes the caller's x-request-id, sends it to the backend, and logs one line per request", async () => {
    const requestId = "gw-req-0001";
    const response = await fetch(`${gateway.url}/v1/products/sku-1002`, { headers: { "x-request-id": requestId } });
    assert.equal(response.status, 200);
    await response.arrayBuffer();
    assert.equal(response.headers.get("x-request-id"), requestId);
    assert.ok(
      shop.log.lines.some((line) => line.requestId === requestId && line.method === "GetProduct"),
      "the catalog's call log line carries the gateway's request id",
    );
    const lines = await linesOf(gatewayLog, requestId);
    assert.equal(lines.length, 1);
    assert.deepEqual(
      { method: lines[0].method, path: lines[0].path, status: lines[0].status, grpcMethod: lines[0].grpcMethod },
      { method: "GET", path: "/v1/products/sku-1002", status: 200, grpcMethod: "/shop.catalog.v1.CatalogService/GetProduct" },
    );
    assert.equal(typeof lines[0].durationMs, "number");
  });

  it("makes a request id when the caller sends none or an unacceptable one", async () => {
    const none = await fetch(`${gateway.url}/healthz`);
    assert.match(none.headers.get("x-request-id") ?? "", /^[0-9a-f-]{36}$/);
    const tooLong = "a".repeat(129);
    const replaced = await fetch(`${gateway.url}/healthz`, { headers: { "x-request-id": tooLong } });
    const made = replaced.headers.get("x-request-id") ?? "";
    assert.notEqual(made, tooLong);
    assert.match(made, /^[0-9a-f-]{36}$/);
  });

  it("answers 400 naming grpc-timeout or x-timeout-ms when either is malformed", async () => {
    for (const [header, value] of [
      ["grpc-timeout", "soon"],
      ["grpc-timeout", "123456789S"],
      ["x-timeout-ms", "-5"],
      ["x-timeout-ms", "1.5"],
    ]) {
      const response = await fetch(`${gateway.url}/v1/products/sku-1001`, { headers: { [header]: value } });
      assert.equal(response.status, 400, `${header}: ${value}`);
      const body = (await response.json()) as StatusBody;
      assert.equal(body.code, status.INVALID_ARGUMENT);
      assert.ok(body.message.startsWith(`${header}:`), body.message);
    }
  });

  it("survives garbage: bad bytes, odd paths and a broken request line, and still serves", async () => {
    const odd = ["/", "//", "/%", "/v1/products/%ZZ", `/v1/${"x".repeat(4000)}`, "/v1/products?page_size=%", "/v1/orders/?"];
    for (const path of odd) {
      const response = await fetch(`${gateway.url}${path}`);
      assert.ok(response.status >= 400 && response.status < 500, `${path}: ${response.status}`);
      const text = await response.text();
      assert.doesNotMatch(text, /\n\s+at /, "no stack trace");
    }
    const binary = await fetch(`${gateway.url}/v1/orders`, { method: "POST", body: Buffer.from([0xff, 0xfe, 0x00, 0x7b]) });
    assert.equal(binary.status, 400);
    await binary.arrayBuffer();
    const answer = await rawRequest(gateway.url, "GARBAGE \x01\x02 HTTP/9.9\r\n\r\n");
    assert.match(answer, /^HTTP\/1\.1 400/);
    assert.equal((await fetch(`${gateway.url}/healthz`)).status, 200);
  });
});

describe("gateway deadlines", () => {
  let stalled: Awaited<ReturnType<typeof stalledCatalog>>;
  let gateway: TestGateway;
  let log: CapturedLog;

  before(async () => {
    log = captureLog();
    stalled = await stalledCatalog(log.logger);
    gateway = await startTestGateway(log.logger, { catalog: stalled.address });
  });
  after(async () => {
    await gateway.close();
    await stalled.server.drain();
  });

  for (const [header, value] of [
    ["grpc-timeout", "300m"],
    ["x-timeout-ms", "300"],
  ]) {
    it(`answers 504 DEADLINE_EXCEEDED within the ${header} a stalled backend lets pass`, async () => {
      const startedAt = Date.now();
      const response = await fetch(`${gateway.url}/v1/products/sku-1001`, { headers: { [header]: value } });
      const elapsed = Date.now() - startedAt;
      assert.equal(response.status, 504);
      assert.equal(((await response.json()) as StatusBody).code, status.DEADLINE_EXCEEDED);
      assert.ok(elapsed >= 250 && elapsed < 2_000, `${elapsed} ms`);
      const deadline = stalled.deadlines[stalled.deadlines.length - 1];
      assert.ok(Math.abs(deadline - (startedAt + 300)) < 150, `the backend saw a deadline ${deadline - startedAt} ms after the request`);
    });
  }

  it("cancels the backend call when the HTTP client hangs up", async () => {
    const requestId = "gw-hang-up-1";
    const abort = new AbortController();
    const pending = fetch(`${gateway.url}/v1/products/sku-1001`, { headers: { "grpc-timeout": "20S", "x-request-id": requestId }, signal: abort.signal });
    const calls = stalled.deadlines.length;
    const deadline = Date.now() + 5_000;
    while (stalled.deadlines.length === calls && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 10));
    abort.abort();
    await assert.rejects(pending);
    for (;;) {
      const outbound = log.lines.find((line) => line.msg === "outbound call" && line.requestId === requestId);
      if (outbound !== undefined) {
        assert.equal(outbound.code, "CANCELLED");
        break;
      }
      assert.ok(Date.now() < deadline, "the outbound call ended CANCELLED well before its 20 s deadline");
      await new Promise((resolve) => setTimeout(resolve, 10));
    }
  });
});

/** The gateway's per-request lines for a request id (the line is written when the response closes). */
async function linesOf(log: CapturedLog, requestId: string): Promise<Array<Record<string, unknown>>> {
  const deadline = Date.now() + 2_000;
  for (;;) {
    const lines = log.lines.filter((line) => line.msg === "http request" && line.requestId === requestId);
    if (lines.length > 0 || Date.now() > deadline) return lines;
    await new Promise((resolve) => setImmediate(resolve));
  }
}

/** Writes raw bytes to the gateway's socket and resolves to what it answered before closing. */
function rawRequest(url: string, text: string): Promise<string> {
  const { hostname, port } = new URL(url);
  return new Promise((resolve, reject) => {
    const socket = net.connect(Number(port), hostname, () => socket.end(text));
    let answer = "";
    socket.setEncoding("latin1");
    socket.on("data", (chunk: string) => (answer += chunk));
    socket.on("error", reject);
    socket.on("close", () => resolve(answer));
  });
}

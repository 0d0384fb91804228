import * as assert from "node:assert/strict";
import { toJson } from "@bufbuild/protobuf";
import { status } from "@grpc/grpc-js";
import { CatalogServiceService } from "../../generated/ts/shop/catalog/v1/catalog";
import type { SearchProductsRequest, SearchProductsResponse } from "../../generated/ts/shop/catalog/v1/catalog";
import { GatewayError } from "../../cli/gateway/errors";
import { loadGatewayMethods } from "../../cli/gateway/methods";
import { matchPathTemplate, parsePathTemplate } from "../../cli/gateway/path-template";
import { bindRequest } from "../../cli/gateway/request-binding";
import { RouteTable } from "../../cli/gateway/routes";
import type { Route } from "../../cli/gateway/routes";
import { MeshError } from "../../mesh/errors";
import { serverStream } from "../../mesh/handler";
import { createServer } from "../../mesh/server";
import { catalogService } from "../../services/catalog/catalog-service";
import { captureLog } from "../support/log-capture";
import { startShop } from "../support/shop";
import type { Shop } from "../support/shop";
import { ndjsonLines, startTestGateway } from "./gateway-fixture";
import type { TestGateway } from "./gateway-fixture";

describe("gateway path templates and routes", () => {
  it("matches literals, variables, '**' and a verb, percent-decoding the variables", () => {
    const byId = parsePathTemplate("/v1/products/{id}");
    assert.deepEqual(matchPathTemplate(byId, "/v1/products/sku%2D1001"), [["id", "sku-1001"]]);
    assert.equal(matchPathTemplate(byId, "/v1/products"), undefined);
    assert.equal(matchPathTemplate(byId, "/v1/products/"), undefined);
    const search = parsePathTemplate("/v1/products:search");
    assert.deepEqual(matchPathTemplate(search, "/v1/products:search"), []);
    assert.equal(matchPathTemplate(search, "/v1/products"), undefined);
    const nested = parsePathTemplate("/v1/{product.id}/files/{name=docs/**}:download");
    assert.deepEqual(nested.verb, "download");
    assert.deepEqual(matchPathTemplate(nested, "/v1/p1/files/docs/a/b.txt:download"), [
      ["product.id", "p1"],
      ["name", "docs/a/b.txt"],
    ]);
    assert.equal(matchPathTemplate(nested, "/v1/p1/files/other/a:download"), undefined);
    // Without a verb in the template, a ':' belongs to the variable.
    assert.deepEqual(matchPathTemplate(byId, "/v1/products/a:b"), [["id", "a:b"]]);
  });

  it("refuses malformed templates, naming the template", () => {
    assert.throws(() => parsePathTemplate("v1/x"), /"v1\/x": must start with '\/'/);
    assert.throws(() => parsePathTemplate("/v1/{id"), /unbalanced braces|unclosed/);
    assert.throws(() => parsePathTemplate("/v1/**/x"), /'\*\*' must be the last segment/);
  });

  it("sends /v1/products:search to SearchProducts and /v1/products/{id} to GetProduct, and answers 405 for a known path", () => {
    const routes = new RouteTable(loadGatewayMethods().methods);
    const search = routes.match("GET", "/v1/products:search");
    assert.equal(search.kind === "found" && search.route.method.name, "SearchProducts");
    const byId = routes.match("GET", "/v1/products/sku-1001");
    assert.equal(byId.kind === "found" && byId.route.method.name, "GetProduct");
    assert.deepEqual(routes.match("DELETE", "/v1/orders"), { kind: "method-not-allowed", allow: ["GET", "POST"] });
    assert.deepEqual(routes.match("GET", "/v2/nothing"), { kind: "not-found" });
  });

  it("refuses two methods bound to the same HTTP method and path shape", () => {
    const { methods } = loadGatewayMethods();
    const getProduct = methods.find((method) => method.name === "GetProduct");
    const getOrder = methods.find((method) => method.name === "GetOrder");
    assert.ok(getProduct && getOrder);
    const clash = { ...getOrder, rules: [{ ...getOrder.rules[0], pattern: { $case: "get" as const, value: "/v1/products/{id}" } }] };
    assert.throws(() => new RouteTable([getProduct, clash]), /GET \/v1\/products\/\* is bound by both \/shop.catalog.v1.CatalogService\/GetProduct and \/shop.orders.v1.OrderService\/GetOrder/);
  });

  it("binds nested and repeated query parameters by proto or JSON name", () => {
    const { registry, methods } = loadGatewayMethods();
    const template = methods[0];
    // GetProductResponse has a nested message with a repeated string and an int64: a shape the
    // shop's requests lack.
    const input = registry.getMessage("shop.catalog.v1.GetProductResponse");
    assert.ok(input);
    const route: Route = {
      httpMethod: "GET",
      template: parsePathTemplate("/x/{product.id}"),
      method: { ...template, input },
      body: "",
      responseBody: "",
    };
    const query = new URLSearchParams("product.tags=a&product.tags=b&product.price_cents=42&product.currency=EUR");
    const message = bindRequest(route, [["product.id", "p1"]], query, "");
    assert.deepEqual(toJson(input, message), { product: { id: "p1", tags: ["a", "b"], priceCents: "42", currency: "EUR" } });
    const camel = bindRequest(route, [["product.id", "p1"]], new URLSearchParams("product.priceCents=7"), "");
    assert.deepEqual(toJson(input, camel), { product: { id: "p1", priceCents: "7" } });
    assert.throws(
      () => bindRequest(route, [], new URLSearchParams("product.currency=a&product.currency=b"), ""),
      (error: unknown) => error instanceof GatewayError && error.httpStatus === 400 && /currency is not repeated/.test(error.message),
    );
    assert.throws(
      () => bindRequest(route, [], new URLSearchParams("product=x"), ""),
      (error: unknown) => error instanceof GatewayError && /set its fields/.test(error.message),
    );
  });
});

describe("gateway JSON transcoding against the shop", () => {
  let shop: Shop;
  let gateway: TestGateway;

  before(async () => {
    shop = await startShop();
    gateway = await startTestGateway(shop.log.logger, { catalog: shop.catalogAddress, orders: shop.ordersAddress });
  });
  after(async () => {
    await gateway.close();
    await shop.stop();
  });

  it("GET /v1/products/sku-1001 answers the product as proto3 JSON (JSON names, int64 as a string)", async () => {
    const response = await fetch(`${gateway.url}/v1/products/sku-1001`);
    assert.equal(response.status, 200);
    assert.match(response.headers.get("content-type") ?? "", /^application\/json/);
    const body = (await response.json()) as { product: Record<string, unknown> };
    assert.equal(body.product.id, "sku-1001");
    assert.equal(typeof body.product.priceCents, "string");
    assert.equal(body.product.price_cents, undefined);
    assert.ok(Array.isArray(body.product.tags));
  });

  it("takes the page size as pageSize and as page_size", async () => {
    for (const name of ["pageSize", "page_size"]) {
      const response = await fetch(`${gateway.url}/v1/products?${name}=5`);
      assert.equal(response.status, 200, name);
      const body = (await response.json()) as { products: unknown[]; nextPageToken?: string };
      assert.equal(body.products.length, 5, name);
      assert.ok(body.nextPageToken, name);
    }
  });

  it("answers 400 naming a query parameter that is unknown, given twice or not a number", async () => {
    for (const [query, named] of [
      ["colour=red", "colour"],
      ["page_size=1&pageSize=2", "page_size"],
      ["page_size=abc", "page_size"],
    ]) {
      const response = await fetch(`${gateway.url}/v1/products?${query}`);
      assert.equal(response.status, 400, query);
      const body = (await response.json()) as { code: number; message: string; details: unknown[] };
      assert.equal(body.code, status.INVALID_ARGUMENT, query);
      assert.ok(body.message.includes(named), `${query}: ${body.message}`);
      assert.deepEqual(body.details, []);
    }
  });

  it("streams GET /v1/products:search?query=tea as one {\"result\": ...} line per product", async () => {
    const response = await fetch(`${gateway.url}/v1/products:search?query=tea`);
    assert.equal(response.status, 200);
    const lines = ndjsonLines(await response.text());
    assert.ok(lines.length >= 5, `${lines.length} lines`);
    for (const line of lines) {
      const result = line.result as { product: { id: string; priceCents: string } };
      assert.deepEqual(Object.keys(line), ["result"]);
      assert.match(result.product.id, /^sku-/);
      assert.equal(typeof result.product.priceCents, "string");
    }
  });

  it("answers a stream that fails before its first message with the status's HTTP code", async () => {
    const response = await fetch(`${gateway.url}/v1/products:search?query=`);
    assert.equal(response.status, 400);
    const body = (await response.json()) as { code: number; message: string };
    assert.equal(body.code, status.INVALID_ARGUMENT);
    assert.match(body.message, /query/);
  });

  it("POST /v1/orders places an order (int64 as strings) and the same idempotency key replays it", async () => {
    const request = { customerId: "cust-gw-1", items: [{ productId: "sku-1001", quantity: 2 }], idempotencyKey: "gw-key-1" };
    const first = await postJson(`${gateway.url}/v1/orders`, request);
    assert.equal(first.status, 200);
    const placed = (await first.json()) as { order: { id: string; totalCents: string; lines: Array<{ quantity: number; unitPriceCents: string }> }; replayed?: boolean };
    assert.match(placed.order.totalCents, /^\d+$/);
    assert.equal(placed.order.lines[0].quantity, 2);
    assert.equal(typeof placed.order.lines[0].unitPriceCents, "string");
    assert.equal(placed.replayed, undefined, "false is a default, so it is omitted");
    const again = await postJson(`${gateway.url}/v1/orders`, request);
    assert.equal(again.status, 200);
    const replay = (await again.json()) as { order: { id: string }; replayed: boolean };
    assert.equal(replay.replayed, true);
    assert.equal(replay.order.id, placed.order.id);

    const got = await fetch(`${gateway.url}/v1/orders/${encodeURIComponent(placed.order.id)}`);
    assert.equal(got.status, 200);
    assert.equal(((await got.json()) as { order: { id: string } }).order.id, placed.order.id);

    for (const name of ["customerId", "customer_id"]) {
      const listed = await fetch(`${gateway.url}/v1/orders?${name}=cust-gw-1`);
      assert.equal(listed.status, 200);
      const orders = ((await listed.json()) as { orders: Array<{ id: string }> }).orders;
      assert.deepEqual(
        orders.map((order) => order.id),
        [placed.order.id],
        name,
      );
    }
  });

  it("takes proto field names in a JSON body too", async () => {
    const response = await postJson(`${gateway.url}/v1/orders`, {
      customer_id: "cust-gw-2",
      items: [{ product_id: "sku-1003", quantity: 1 }],
      idempotency_key: "gw-key-2",
    });
    assert.equal(response.status, 200);
    const body = (await response.json()) as { order: { customerId: string } };
    assert.equal(body.order.customerId, "cust-gw-2");
  });

  it("answers 404 with the google.rpc.Status body for a product that is not found", async () => {
    const response = await fetch(`${gateway.url}/v1/products/sku-none`);
    assert.equal(response.status, 404);
    const body = (await response.json()) as { code: number; message: string; details: unknown[] };
    assert.equal(body.code, status.NOT_FOUND);
    assert.match(body.message, /sku-none/);
    assert.deepEqual(body.details, []);
  });

  it("answers 400 naming the field for a bad value, an unknown field and malformed JSON", async () => {
    const cases: Array<[string, RegExp]> = [
      [JSON.stringify({ items: [{ quantity: "abc" }] }), /quantity/],
      [JSON.stringify({ customerId: "c", colour: "red" }), /colour/],
      ['{"customerId": ', /malformed JSON/],
      ["[1, 2]", /PlaceOrderRequest/],
    ];
    for (const [body, named] of cases) {
      const response = await fetch(`${gateway.url}/v1/orders`, { method: "POST", headers: { "content-type": "application/json" }, body });
      assert.equal(response.status, 400, body);
      const answer = (await response.json()) as { code: number; message: string };
      assert.equal(answer.code, status.INVALID_ARGUMENT, body);
      assert.match(answer.message, named, body);
      assert.doesNotMatch(answer.message, /\n\s+at /, "no stack trace");
    }
  });

  it("answers 400 for a path with a malformed percent-encoding", async () => {
    const response = await fetch(`${gateway.url}/v1/products/%E0%A4%A`);
    assert.equal(response.status, 400);
    assert.equal(((await response.json()) as { code: number }).code, status.INVALID_ARGUMENT);
  });
});

describe("gateway streams that fail after their first message", () => {
  it("ends the NDJSON stream with an {\"error\": ...} line", async () => {
    const log = captureLog().logger;
    const server = createServer({ name: "catalog", logger: log });
    server.addService(CatalogServiceService, {
      ...catalogService(),
      searchProducts: serverStream<SearchProductsRequest, SearchProductsResponse>(async function* () {
        yield { product: { id: "sku-1", name: "one", description: "", priceCents: 1, currency: "EUR", tags: [] } };
        throw new MeshError(status.UNAVAILABLE, "the index went away");
      }),
    });
    const address = `127.0.0.1:${await server.listen()}`;
    const gateway = await startTestGateway(log, { catalog: address });
    try {
      const response = await fetch(`${gateway.url}/v1/products:search?query=x`);
      assert.equal(response.status, 200);
      const lines = ndjsonLines(await response.text());
      assert.equal(lines.length, 2);
      assert.equal((lines[0].result as { product: { id: string } }).product.id, "sku-1");
      assert.deepEqual(lines[1], { error: { code: status.UNAVAILABLE, message: "the index went away", details: [] } });
    } finally {
      await gateway.close();
      await server.drain();
    }
  });
});

function postJson(url: string, body: unknown): Promise<Response> {
  return fetch(url, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(body) });
}

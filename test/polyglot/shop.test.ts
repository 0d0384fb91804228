import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import * as fs from "node:fs";
import * as path from "node:path";
import { Metadata, status } from "@grpc/grpc-js";
import type { ServiceError } from "@grpc/grpc-js";
import { InventoryServiceClient } from "../../generated/ts/shop/inventory/v1/inventory";
import type { StockLevel } from "../../generated/ts/shop/inventory/v1/inventory";
import { OrderServiceClient } from "../../generated/ts/shop/orders/v1/orders";
import type { PlaceOrderRequest, PlaceOrderResponse } from "../../generated/ts/shop/orders/v1/orders";
import { PricingServiceClient } from "../../generated/ts/shop/pricing/v1/pricing";
import { createClient, tracingFromEnvironment } from "../../mesh";
import { ChaosMesh, chaosMeshConfig } from "../support/chaos";
import type { Replica } from "../support/chaos";
import { interopCall, polyglotPrograms, requireLanguages } from "../support/interop";
import { waitFor } from "../support/wait";
import { startJaeger } from "../support/jaeger";
import type { Jaeger } from "../support/jaeger";
import { SPAN_KIND } from "../support/otlp-receiver";
import type { ReceivedSpan } from "../support/otlp-receiver";
import { requireTool, toolPath } from "../support/tools";

/**
 * The shop across three languages, as `make up` runs it: orders (TypeScript) reserves stock with
 * inventory (Go, 2 replicas on one SQLite file), has the basket quoted by pricing (Python, 2
 * replicas, which prices from the catalog), names the lines from the catalog (TypeScript), and
 * records the order. All by name through a real control plane. Every replica exports its spans to a
 * real Jaeger (OTEL_EXPORTER_OTLP_ENDPOINT), which the trace test reads back.
 */

const SERVICES = ["catalog", "inventory", "pricing", "orders"];
/** Units of every product the inventory starts with (services/inventory). */
const SEED_UNITS = 1000;

describe("polyglot shop: PlaceOrder through catalog (TypeScript), inventory (Go), pricing (Python) and orders (test/polyglot)", function () {
  this.timeout(120_000);
  let mesh: ChaosMesh;
  let orders: OrderServiceClient;
  let inventory: InventoryServiceClient;
  const pricing: Replica[] = [];
  /** Where every replica sends its spans; undefined when Jaeger is not installed (`make jaeger`). */
  let jaeger: Jaeger | undefined;

  before(async function () {
    requireLanguages(this, "go", "python");
    const programs = polyglotPrograms();
    const jaegerBinary = toolPath("jaeger");
    jaeger = fs.existsSync(jaegerBinary) ? await startJaeger(jaegerBinary) : undefined;
    // Spans leave each process within 100 ms of their end, not at its exit.
    const traced: Record<string, string> = jaeger ? { OTEL_EXPORTER_OTLP_ENDPOINT: jaeger.otlpUrl, OTEL_BSP_SCHEDULE_DELAY: "100" } : {};
    mesh = await ChaosMesh.start({ meshConfig: chaosMeshConfig(3_000, SERVICES) });
    const inventoryStore = `sqlite:${path.join(mesh.dir, "inventory.sqlite")}`;
    await mesh.addReplica("catalog-0", { env: traced });
    for (const index of [0, 1]) {
      await mesh.addReplica(`inventory-${index}`, { program: { file: programs.goInventory, args: [] }, env: { INVENTORY_STORE_URL: inventoryStore, ...traced } });
      pricing.push(await mesh.addReplica(`pricing-${index}`, { program: { file: programs.python, args: [programs.pricing] }, env: traced }));
    }
    await mesh.addReplica("orders-0", {
      service: "orders",
      env: { ORDERS_STORE_URL: `sqlite:${path.join(mesh.dir, "orders.sqlite")}`, INVENTORY_TARGET: "inventory", PRICING_TARGET: "pricing", ...traced },
    });
    orders = await mesh.ordersClient();
    inventory = createClient(InventoryServiceClient, "inventory", { controlPlane: mesh.controlPlane, logger: mesh.log.logger });
    // Every hop's channel connected before the assertions: pricing's first xDS resolution of the
    // catalog can take longer than one call's budget on 2 busy cores.
    const pricingClient = createClient(PricingServiceClient, "pricing", { controlPlane: mesh.controlPlane, logger: mesh.log.logger });
    try {
      await waitFor("a quote through pricing and the catalog", () =>
        new Promise<boolean>((resolve) =>
          pricingClient.quoteBasket({ customerId: "warm-up", lines: [{ productId: "sku-1001", quantity: 1 }], currency: "" }, (error) => resolve(error === null)),
        ), 30_000, 200);
    } finally {
      pricingClient.close();
    }
  });

  after(async function () {
    inventory?.close();
    await mesh?.stop();
    await jaeger?.stop();
  });

  const place = (request: PlaceOrderRequest) =>
    new Promise<{ error: ServiceError | null; response?: PlaceOrderResponse }>((resolve) =>
      orders.placeOrder(request, new Metadata(), { deadline: Date.now() + 10_000 }, (error, response) => resolve({ error, response })),
    );

  const stock = (productId: string) =>
    new Promise<StockLevel>((resolve, reject) =>
      inventory.getStock({ productId }, (error, response) => (error ? reject(error) : resolve(response.stock!))),
    );

  it("reserves the stock, quotes the basket with its discounts, and records the order; a replay holds nothing more", async function () {
    const before = await stock("sku-1002");
    const request = { customerId: "cust-poly", items: [{ productId: "sku-1002", quantity: 5 }, { productId: "sku-1003", quantity: 1 }], idempotencyKey: "poly-1" };
    const { error, response } = await place(request);
    assert.equal(error, null, error?.message);
    const order = response!.order!;
    assert.notEqual(order.reservationId, "", "the order names its reservation");
    // sku-1002 costs 12.90: 5 of them are 64.50, less 10 % for 5 or more units (6.45); sku-1003 is 8.90.
    assert.deepEqual(
      order.lines.map((line) => [line.productId, line.productName, line.unitPriceCents, line.discountCents, line.lineTotalCents]),
      [
        ["sku-1002", "Filter coffee 500 g", 1290, 645, 5805],
        ["sku-1003", "Green tea 100 g", 890, 0, 890],
      ],
    );
    assert.equal(order.totalCents, 5805 + 890, "under 100.00: no basket discount");
    assert.equal(order.discountCents, 0);
    const after = await stock("sku-1002");
    assert.equal(after.available, before.available - 5);
    assert.equal(after.reserved, before.reserved + 5);

    const replay = await place(request);
    assert.equal(replay.error, null);
    assert.equal(replay.response!.replayed, true);
    assert.equal(replay.response!.order!.id, order.id);
    assert.equal((await stock("sku-1002")).available, after.available, "a replayed order reserves nothing");
  });

  it("follows one PlaceOrder's trace in Jaeger through orders (TypeScript), inventory (Go), pricing (Python) and the catalog (TypeScript): one trace, each server span the child of its caller's client span", async function () {
    if (jaeger === undefined) requireTool(this, "jaeger");
    const callerTracing = tracingFromEnvironment({ OTEL_EXPORTER_OTLP_ENDPOINT: jaeger!.otlpUrl, OTEL_SERVICE_NAME: "caller" }, "caller")!;
    const client = createClient(OrderServiceClient, "orders", { controlPlane: mesh.controlPlane, logger: mesh.log.logger, tracer: callerTracing.tracer });
    // The caller's own caller, as a traceparent: the trace's id is known before any span is made.
    const [traceId, origin] = [randomBytes(16).toString("hex"), randomBytes(8).toString("hex")];
    const metadata = new Metadata();
    metadata.set("traceparent", `00-${traceId}-${origin}-01`);
    const request = { customerId: "cust-trace", items: [{ productId: "sku-1002", quantity: 1 }, { productId: "sku-1003", quantity: 2 }], idempotencyKey: "poly-trace" };
    try {
      const error = await new Promise<ServiceError | null>((resolve) => client.placeOrder(request, metadata, { deadline: Date.now() + 10_000 }, resolve));
      assert.equal(error, null, error?.message);
    } finally {
      client.close();
      await callerTracing.shutdown();
    }
    // 14 spans: the caller's; orders' server span and its 4 calls (ReserveStock, QuoteBasket, 2
    // GetProduct); inventory's; pricing's and its 2 GetProduct; the catalog's 4. Every process
    // batches for 100 ms, and so does Jaeger.
    let spans: ReceivedSpan[] = [];
    await waitFor("the PlaceOrder's 14 spans in Jaeger", async () => (spans = await jaeger!.trace(traceId)).length >= 14, 15_000, 200).catch(
      () => undefined, // the assertions below name what is missing
    );
    const { SERVER, CLIENT } = SPAN_KIND;
    const account = () => spans.map((span) => `${span.service} ${span.kind === SERVER ? "SERVER" : "CLIENT"} ${span.name} ${span.spanId}←${span.parentSpanId}`).join("\n  ");
    const childrenOf = (parentId: string, service: string, kind: number, name: string, count = 1) => {
      const found = spans.filter((span) => span.parentSpanId === parentId && span.service === service && span.kind === kind && span.name === name);
      assert.equal(found.length, count, `${count} ${service} ${name} span(s) under ${parentId}; the trace in Jaeger:\n  ${account()}`);
      return found;
    };
    const one = (parent: ReceivedSpan, service: string, kind: number, name: string, count = 1) => childrenOf(parent.spanId, service, kind, name, count);
    const CATALOG_GET = "shop.catalog.v1.CatalogService/GetProduct";
    const [caller] = childrenOf(origin, "caller", CLIENT, "shop.orders.v1.OrderService/PlaceOrder");
    const [ordersServer] = one(caller, "orders", SERVER, "shop.orders.v1.OrderService/PlaceOrder");
    const [reserve] = one(ordersServer, "orders", CLIENT, "shop.inventory.v1.InventoryService/ReserveStock");
    const [inventoryServer] = one(reserve, "inventory", SERVER, "shop.inventory.v1.InventoryService/ReserveStock");
    const [quote] = one(ordersServer, "orders", CLIENT, "shop.pricing.v1.PricingService/QuoteBasket");
    const [pricingServer] = one(quote, "pricing", SERVER, "shop.pricing.v1.PricingService/QuoteBasket");
    // pricing prices each distinct product from the catalog, and orders names each line from it.
    for (const parent of [pricingServer, ordersServer]) {
      for (const call of one(parent, parent.service, CLIENT, CATALOG_GET, 2)) one(call, "catalog", SERVER, CATALOG_GET);
    }
    for (const span of [ordersServer, inventoryServer, pricingServer]) {
      assert.equal(span.attributes["rpc.system"], "grpc", `${span.service}: rpc.system`);
      assert.equal(span.attributes["rpc.grpc.status_code"], 0, `${span.service}: rpc.grpc.status_code`);
    }
    assert.equal(spans.length, 14, `no other span in the trace:\n  ${account()}`);
  });

  it("gives a basket of 100.00 or more the basket discount", async function () {
    const { error, response } = await place({ customerId: "cust-poly", items: [{ productId: "sku-1007", quantity: 2 }], idempotencyKey: "poly-big" });
    assert.equal(error, null, error?.message);
    // 2 × 89.00 = 178.00, under 5 units: no line discount; 5 % off the basket: 8.90.
    assert.equal(response!.order!.lines[0].lineTotalCents, 17_800);
    assert.equal(response!.order!.discountCents, 890);
    assert.equal(response!.order!.totalCents, 17_800 - 890);
  });

  it("fails FAILED_PRECONDITION naming the item when the stock is short, and holds none of the order", async function () {
    const all = await place({ customerId: "cust-poly", items: [{ productId: "sku-1005", quantity: SEED_UNITS }], idempotencyKey: "poly-all" });
    assert.equal(all.error, null, all.error?.message);
    const before = await stock("sku-1004");
    const { error } = await place({
      customerId: "cust-poly",
      items: [{ productId: "sku-1004", quantity: 1 }, { productId: "sku-1005", quantity: 1 }],
      idempotencyKey: "poly-short",
    });
    assert.equal(error?.code, status.FAILED_PRECONDITION, error?.message);
    assert.match(error!.details, /^inventory: items\[1\]\.product_id: not enough stock/);
    assert.deepEqual(await stock("sku-1004"), before, "all or nothing");
  });

  it("fails UNAVAILABLE naming pricing when pricing is down, releases what it reserved, and places the order once pricing is back", async function () {
    const before = await stock("sku-1006");
    for (const replica of pricing) replica.process!.signal("SIGTERM");
    const request = { customerId: "cust-poly", items: [{ productId: "sku-1006", quantity: 3 }], idempotencyKey: "poly-down" };
    try {
      // Gone from the registry and exited: a replica still shutting down refuses a call with
      // CANCELLED, which is not what "pricing is down" means here.
      for (const replica of pricing) await mesh.waitHealth(replica, undefined, 10_000);
      for (const replica of pricing) await replica.process!.exited;
      const { error } = await place(request);
      assert.equal(error?.code, status.UNAVAILABLE, error?.message);
      assert.match(error!.details, /^pricing: /);
      assert.deepEqual(await stock("sku-1006"), before, "the reservation was released");
    } finally {
      // The suite's later tests need pricing, whatever happened above.
      for (const replica of pricing) await mesh.restart(replica);
    }
    const retried = await place(request);
    assert.equal(retried.error, null, retried.error?.message);
    const after = await stock("sku-1006");
    assert.equal(after.available, before.available - 3, "the order placed on retry holds its stock");
    assert.equal(after.reserved, before.reserved + 3);
  });

  for (const language of ["go", "python"] as const) {
    it(`a ${language} client places an order and reads the catalog, by name through the mesh`, async function () {
      const [placed] = await interopCall(language, mesh.controlPlane, {
        target: "orders",
        method: "/shop.orders.v1.OrderService/PlaceOrder",
        request: { customerId: `cust-${language}`, items: [{ productId: "sku-1010", quantity: 1 }], idempotencyKey: `from-${language}` },
        deadlineMs: 10_000,
      });
      assert.equal(placed.codeName, "OK", JSON.stringify(placed));
      const order = (placed.response as { order: { totalCents: string; reservationId: string; lines: Array<{ productName: string }> } }).order;
      assert.equal(order.totalCents, "1990", "int64 in proto3 JSON is a string");
      assert.notEqual(order.reservationId, "");
      assert.equal(order.lines[0].productName, "Travel mug");
      const [product] = await interopCall(language, mesh.controlPlane, {
        target: "catalog",
        method: "/shop.catalog.v1.CatalogService/GetProduct",
        request: { id: "sku-1001" },
        deadlineMs: 10_000,
      });
      assert.equal(product.codeName, "OK", JSON.stringify(product));
      assert.equal((product.response as { product: { name: string } }).product.name, "Espresso beans 1 kg");
      const [missing] = await interopCall(language, mesh.controlPlane, {
        target: "catalog",
        method: "/shop.catalog.v1.CatalogService/GetProduct",
        request: { id: "sku-0" },
        deadlineMs: 10_000,
      });
      assert.equal(missing.codeName, "NOT_FOUND", JSON.stringify(missing));
    });
  }

  it("streams stock changes from the Go inventory to a TypeScript client (WatchStock)", async function () {
    const stream = inventory.watchStock({ productIds: ["sku-1011"] }, new Metadata(), { deadline: Date.now() + 20_000 });
    const seen: StockLevel[] = [];
    const changed = new Promise<void>((resolve, reject) => {
      stream.on("data", (message: { stock?: StockLevel }) => {
        seen.push(message.stock!);
        if (seen.length === 2) resolve();
      });
      stream.on("error", (error: ServiceError) => {
        if (error.code !== status.CANCELLED) reject(error);
      });
    });
    await new Promise((resolve) => setTimeout(resolve, 300));
    const { error } = await place({ customerId: "cust-poly", items: [{ productId: "sku-1011", quantity: 2 }], idempotencyKey: "poly-watch" });
    assert.equal(error, null, error?.message);
    await changed;
    stream.cancel();
    assert.equal(seen[0].productId, "sku-1011");
    assert.equal(seen[1].available, seen[0].available - 2);
  });
});

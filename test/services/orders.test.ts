import assert from "node:assert/strict";
import { status } from "@grpc/grpc-js";
import { CatalogServiceClient } from "../../generated/ts/shop/catalog/v1/catalog";
import { OrderServiceClient, OrderServiceService, OrderStatus } from "../../generated/ts/shop/orders/v1/orders";
import type { PlaceOrderRequest } from "../../generated/ts/shop/orders/v1/orders";
import { createClient } from "../../mesh/client";
import { createServer } from "../../mesh/server";
import { openOrderStore } from "../../services/orders/order-store-url";
import { ordersService } from "../../services/orders/orders-service";
import { callUnary, expectOk } from "../support/calls";
import { captureLog } from "../support/log-capture";
import { stalledCatalog, useShop } from "../support/shop";

const order = (overrides: Partial<PlaceOrderRequest> = {}): PlaceOrderRequest => ({
  customerId: "cust-1",
  items: [
    { productId: "sku-1001", quantity: 2 },
    { productId: "sku-1006", quantity: 3 },
  ],
  idempotencyKey: `key-${Math.random().toString(36).slice(2)}`,
  ...overrides,
});

describe("orders service", () => {
  const context = useShop();

  const place = (request: PlaceOrderRequest) => callUnary(context.clients.orders.placeOrder, context.clients.orders, request);

  it("prices every line against the catalog and stores the order", async () => {
    const { order: placed, replayed } = await expectOk(context.clients.orders.placeOrder, context.clients.orders, order({ customerId: "cust-price" }));
    assert.equal(replayed, false);
    assert.ok(placed);
    assert.equal(placed.status, OrderStatus.ORDER_STATUS_PLACED);
    assert.deepEqual(
      placed.lines.map((line) => [line.productId, line.productName, line.quantity, line.unitPriceCents, line.lineTotalCents]),
      [
        ["sku-1001", "Espresso beans 1 kg", 2, 2490, 4980],
        ["sku-1006", "Paper filters x100", 3, 450, 1350],
      ],
    );
    assert.equal(placed.totalCents, 6330);
    assert.equal(placed.currency, "EUR");
    const fetched = await expectOk(context.clients.orders.getOrder, context.clients.orders, { id: placed.id });
    assert.deepEqual(fetched.order, placed);
  });

  it("calls the catalog once per item, with the caller's request id", async () => {
    const before = context.shop.log.lines.length;
    await expectOk(context.clients.orders.placeOrder, context.clients.orders, order());
    const catalogCalls = context.shop.log.lines
      .slice(before)
      .filter((line) => line.server === "catalog" && line.method === "GetProduct");
    assert.equal(catalogCalls.length, 2);
    const orderLine = context.shop.log.lines.slice(before).find((line) => line.server === "orders" && line.method === "PlaceOrder");
    assert.ok(orderLine);
    assert.ok(catalogCalls.every((line) => line.requestId === orderLine.requestId));
  });

  it("returns the first order for a repeated idempotency key instead of creating a second", async () => {
    const request = order({ customerId: "cust-idem", idempotencyKey: "idem-1" });
    const first = await expectOk(context.clients.orders.placeOrder, context.clients.orders, request);
    const second = await expectOk(context.clients.orders.placeOrder, context.clients.orders, { ...request, items: [{ productId: "sku-1002", quantity: 1 }] });
    assert.equal(second.replayed, true);
    assert.deepEqual(second.order, first.order);
    const listed = await expectOk(context.clients.orders.listOrders, context.clients.orders, { customerId: "cust-idem", pageSize: 0, pageToken: "" });
    assert.equal(listed.orders.length, 1);
  });

  it("creates one order when the same key arrives concurrently", async () => {
    const request = order({ customerId: "cust-race", idempotencyKey: "race-1" });
    const outcomes = await Promise.all(Array.from({ length: 5 }, () => expectOk(context.clients.orders.placeOrder, context.clients.orders, request)));
    assert.equal(new Set(outcomes.map((outcome) => outcome.order?.id)).size, 1);
    assert.equal(outcomes.filter((outcome) => !outcome.replayed).length, 1);
    const listed = await expectOk(context.clients.orders.listOrders, context.clients.orders, { customerId: "cust-race", pageSize: 0, pageToken: "" });
    assert.equal(listed.orders.length, 1);
  });

  const invalid: [string, Partial<PlaceOrderRequest>, RegExp][] = [
    ["customer_id is empty", { customerId: "" }, /^customer_id: is required$/],
    ["customer_id is too long", { customerId: "c".repeat(65) }, /^customer_id: must be at most 64/],
    ["idempotency_key is empty", { idempotencyKey: "" }, /^idempotency_key: is required$/],
    ["idempotency_key is too long", { idempotencyKey: "k".repeat(129) }, /^idempotency_key: must be at most 128/],
    ["items is empty", { items: [] }, /^items: must hold at least one item$/],
    ["a product_id is empty", { items: [{ productId: "", quantity: 1 }] }, /^items\[0\]\.product_id: is required$/],
    ["a quantity is 0", { items: [{ productId: "sku-1001", quantity: 1 }, { productId: "sku-1002", quantity: 0 }] }, /^items\[1\]\.quantity: must be between 1 and 1000$/],
    ["a quantity is over 1000", { items: [{ productId: "sku-1001", quantity: 1001 }] }, /^items\[0\]\.quantity: /],
    ["a quantity is negative", { items: [{ productId: "sku-1001", quantity: -3 }] }, /^items\[0\]\.quantity: /],
    ["a product appears twice", { items: [{ productId: "sku-1001", quantity: 1 }, { productId: "sku-1001", quantity: 1 }] }, /^items\[1\]\.product_id: "sku-1001" appears twice$/],
  ];
  for (const [problem, overrides, details] of invalid) {
    it(`refuses an order where ${problem} with INVALID_ARGUMENT naming the field`, async () => {
      const { error } = await place(order(overrides));
      assert.equal(error?.code, status.INVALID_ARGUMENT);
      assert.match(error?.details ?? "", details);
    });
  }

  it("answers an order of an unknown product with NOT_FOUND naming the item, and stores nothing", async () => {
    const request = order({ customerId: "cust-unknown", items: [{ productId: "sku-1001", quantity: 1 }, { productId: "sku-9999", quantity: 1 }] });
    const { error } = await place(request);
    assert.equal(error?.code, status.NOT_FOUND);
    assert.equal(error?.details, 'items[1].product_id: product "sku-9999" not found');
    const listed = await expectOk(context.clients.orders.listOrders, context.clients.orders, { customerId: "cust-unknown", pageSize: 0, pageToken: "" });
    assert.equal(listed.orders.length, 0);
  });

  it("answers GetOrder for an unknown id with NOT_FOUND and an empty id with INVALID_ARGUMENT", async () => {
    assert.equal((await callUnary(context.clients.orders.getOrder, context.clients.orders, { id: "ord-nope" })).error?.code, status.NOT_FOUND);
    assert.equal((await callUnary(context.clients.orders.getOrder, context.clients.orders, { id: "" })).error?.code, status.INVALID_ARGUMENT);
  });

  it("lists a customer's orders newest first, in pages", async () => {
    const ids: string[] = [];
    for (let index = 0; index < 5; index += 1) {
      const placed = await expectOk(context.clients.orders.placeOrder, context.clients.orders, order({ customerId: "cust-list" }));
      ids.push(placed.order?.id ?? "");
    }
    const first = await expectOk(context.clients.orders.listOrders, context.clients.orders, { customerId: "cust-list", pageSize: 3, pageToken: "" });
    const second = await expectOk(context.clients.orders.listOrders, context.clients.orders, { customerId: "cust-list", pageSize: 3, pageToken: first.nextPageToken });
    assert.deepEqual([...first.orders, ...second.orders].map((listed) => listed.id), ids.reverse());
    assert.equal(second.nextPageToken, "");
  });
});

describe("orders when the catalog is unreachable or slow", () => {
  it("answers UNAVAILABLE when the catalog cannot be reached, within the call's deadline", async () => {
    const log = captureLog();
    // A port nothing listens on: bind one and close it.
    const probe = createServer({ name: "probe", logger: log.logger });
    const deadPort = await probe.listen();
    await probe.drain(100);
    const catalog = createClient(CatalogServiceClient, `127.0.0.1:${deadPort}`, { logger: log.logger, defaultDeadlineMs: 500 });
    const store = await openOrderStore({ kind: "sqlite", file: ":memory:" }, { logger: log.logger });
    const server = createServer({ name: "orders", logger: log.logger });
    server.addService(OrderServiceService, ordersService({ catalog }, store));
    const client = createClient(OrderServiceClient, `127.0.0.1:${await server.listen()}`, { logger: log.logger });
    try {
      const { error } = await callUnary(client.placeOrder, client, order());
      assert.ok(error);
      assert.ok([status.UNAVAILABLE, status.DEADLINE_EXCEEDED].includes(error.code), `code ${status[error.code]}`);
      assert.match(error.details, /^catalog: /);
    } finally {
      client.close();
      catalog.close();
      await server.drain(500);
      await store.close();
    }
  });

  it("passes its own remaining deadline to the catalog call (the earlier of the two wins)", async () => {
    const log = captureLog();
    const { server: slowCatalog, address: catalogAddress, deadlines: catalogDeadlines } = await stalledCatalog(log.logger);
    const catalog = createClient(CatalogServiceClient, catalogAddress, {
      logger: log.logger,
      methodDeadlinesMs: { GetProduct: 10_000 },
    });
    const store = await openOrderStore({ kind: "sqlite", file: ":memory:" }, { logger: log.logger });
    const server = createServer({ name: "orders", logger: log.logger });
    server.addService(OrderServiceService, ordersService({ catalog }, store));
    const client = createClient(OrderServiceClient, `127.0.0.1:${await server.listen()}`, { logger: log.logger });
    try {
      const callerDeadline = Date.now() + 300;
      const { error } = await callUnary(client.placeOrder, client, order({ items: [{ productId: "sku-1001", quantity: 1 }] }), { deadline: callerDeadline });
      assert.equal(error?.code, status.DEADLINE_EXCEEDED);
      assert.equal(catalogDeadlines.length, 1);
      assert.ok(catalogDeadlines[0] <= callerDeadline + 20, `catalog deadline ${catalogDeadlines[0] - callerDeadline} ms after the caller's`);
    } finally {
      client.close();
      catalog.close();
      await Promise.all([server.drain(200), slowCatalog.drain(200)]);
      await store.close();
    }
  });
});

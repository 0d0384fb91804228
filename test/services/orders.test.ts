import assert from "node:assert/strict";
import { status } from "@grpc/grpc-js";
import type { ServerWritableStream } from "@grpc/grpc-js";
import { CatalogServiceClient, CatalogServiceService } from "../../generated/ts/shop/catalog/v1/catalog";
import { InventoryServiceClient, InventoryServiceService } from "../../generated/ts/shop/inventory/v1/inventory";
import type { InventoryServiceServer, ReleaseStockRequest, ReserveStockRequest } from "../../generated/ts/shop/inventory/v1/inventory";
import { PricingServiceClient, PricingServiceService } from "../../generated/ts/shop/pricing/v1/pricing";
import type { QuoteBasketRequest } from "../../generated/ts/shop/pricing/v1/pricing";
import { MeshError, unary } from "../../mesh";
import { catalogService } from "../../services/catalog/catalog-service";
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

describe("orders with an inventory and pricing (TypeScript stand-ins on real servers)", () => {
  /** What the stand-ins were asked, and how pricing answers. */
  interface Downstream {
    reserved: string[];
    released: string[];
    priced: number;
    pricingFailure?: { code: status; details: string };
    inventoryFailure?: { code: status; details: string };
  }

  async function withOrders(test: (client: OrderServiceClient, seen: Downstream) => Promise<void>): Promise<void> {
    const log = captureLog();
    const seen: Downstream = { reserved: [], released: [], priced: 0 };
    const catalogServer = createServer({ name: "catalog", logger: log.logger });
    catalogServer.addService(CatalogServiceService, catalogService());
    const inventoryServer = createServer({ name: "inventory", logger: log.logger });
    inventoryServer.addService(InventoryServiceService, {
      getStock: unary(async () => ({ stock: undefined })),
      reserveStock: unary(async (request: ReserveStockRequest) => {
        if (seen.inventoryFailure) throw new MeshError(seen.inventoryFailure.code, seen.inventoryFailure.details);
        seen.reserved.push(request.orderId);
        return { reservationId: `res-${request.orderId}`, stock: [] };
      }),
      releaseStock: unary(async (request: ReleaseStockRequest) => {
        seen.released.push(request.reservationId);
        return { stock: [] };
      }),
      watchStock: (call: ServerWritableStream<unknown, unknown>) => call.end(),
    } as InventoryServiceServer);
    const pricingServer = createServer({ name: "pricing", logger: log.logger });
    pricingServer.addService(PricingServiceService, {
      quoteBasket: unary(async (request: QuoteBasketRequest) => {
        seen.priced += 1;
        if (seen.pricingFailure) throw new MeshError(seen.pricingFailure.code, seen.pricingFailure.details);
        // 1.00 a unit, 0.10 off each line, and 0.50 off the basket.
        const lines = request.lines.map((line) => ({ ...line, unitPriceCents: 100, discountCents: 10, lineTotalCents: 100 * line.quantity - 10 }));
        const subtotalCents = lines.reduce((sum, line) => sum + 100 * line.quantity, 0);
        const linesTotal = lines.reduce((sum, line) => sum + line.lineTotalCents, 0);
        return { lines, subtotalCents, discountCents: subtotalCents - linesTotal + 50, totalCents: linesTotal - 50, currency: "EUR", validUntilMs: 0 };
      }),
    });
    const addresses = await Promise.all([catalogServer, inventoryServer, pricingServer].map(async (server) => `127.0.0.1:${await server.listen()}`));
    const catalog = createClient(CatalogServiceClient, addresses[0], { logger: log.logger });
    const inventory = createClient(InventoryServiceClient, addresses[1], { logger: log.logger });
    const pricing = createClient(PricingServiceClient, addresses[2], { logger: log.logger });
    const store = await openOrderStore({ kind: "sqlite", file: ":memory:" }, { logger: log.logger });
    const server = createServer({ name: "orders", logger: log.logger });
    server.addService(OrderServiceService, ordersService({ catalog, inventory, pricing, logger: log.logger }, store));
    const client = createClient(OrderServiceClient, `127.0.0.1:${await server.listen()}`, { logger: log.logger });
    try {
      await test(client, seen);
    } finally {
      client.close();
      for (const downstream of [catalog, inventory, pricing]) downstream.close();
      await Promise.all([server, catalogServer, inventoryServer, pricingServer].map((each) => each.drain(200)));
      await store.close();
    }
  }

  it("reserves the order's stock under its id, then takes pricing's quote: lines, discounts and total", async () => {
    await withOrders(async (client, seen) => {
      const placed = await expectOk(client.placeOrder, client, order({ items: [{ productId: "sku-1001", quantity: 3 }] }));
      const { order: recorded } = placed;
      assert.deepEqual(seen.reserved, [recorded!.id]);
      assert.equal(recorded!.reservationId, `res-${recorded!.id}`);
      assert.deepEqual(
        recorded!.lines.map((line) => [line.productName, line.unitPriceCents, line.discountCents, line.lineTotalCents]),
        [["Espresso beans 1 kg", 100, 10, 290]],
      );
      assert.equal(recorded!.totalCents, 240);
      assert.equal(recorded!.discountCents, 50, "the basket's own discount, not the lines'");
      assert.deepEqual(seen.released, []);
    });
  });

  it("releases the reservation when pricing fails, and answers with pricing's status, named", async () => {
    await withOrders(async (client, seen) => {
      seen.pricingFailure = { code: status.UNAVAILABLE, details: "no healthy endpoint" };
      const { error } = await callUnary(client.placeOrder, client, order());
      assert.equal(error?.code, status.UNAVAILABLE);
      assert.equal(error?.details, "pricing: no healthy endpoint");
      assert.equal(seen.reserved.length, 1);
      assert.deepEqual(seen.released, [`res-${seen.reserved[0]}`]);
    });
  });

  it("releases the reservation when the catalog does not know an item, naming the item", async () => {
    await withOrders(async (client, seen) => {
      const { error } = await callUnary(client.placeOrder, client, order({ items: [{ productId: "sku-1001", quantity: 1 }, { productId: "sku-9999", quantity: 1 }] }));
      assert.equal(error?.code, status.NOT_FOUND);
      assert.match(error!.details, /^items\[1\]\.product_id: product "sku-9999" not found/);
      assert.deepEqual(seen.released, seen.reserved.map((id) => `res-${id}`));
    });
  });

  it("asks neither pricing nor for a release when the inventory refuses the reservation", async () => {
    await withOrders(async (client, seen) => {
      seen.inventoryFailure = { code: status.FAILED_PRECONDITION, details: 'items[0].product_id: not enough stock of "sku-1001"' };
      const { error } = await callUnary(client.placeOrder, client, order());
      assert.equal(error?.code, status.FAILED_PRECONDITION);
      assert.equal(error?.details, 'inventory: items[0].product_id: not enough stock of "sku-1001"');
      assert.equal(seen.priced, 0);
      assert.deepEqual(seen.released, []);
    });
  });
});

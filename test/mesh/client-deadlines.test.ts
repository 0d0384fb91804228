import assert from "node:assert/strict";
import { Metadata, status } from "@grpc/grpc-js";
import { CatalogServiceClient } from "../../generated/ts/shop/catalog/v1/catalog";
import { createClient } from "../../mesh/client";
import { DEFAULT_DEADLINE_MS, RESET_AT_DEADLINE_DETAILS, atDeadline, deadlinePolicy, resolveDeadline, timeoutFor } from "../../mesh/deadlines";
import type { MeshServer } from "../../mesh/server";
import { callUnary } from "../support/calls";
import { captureLog } from "../support/log-capture";
import type { CapturedLog } from "../support/log-capture";
import { stalledCatalog } from "../support/shop";

describe("deadline policy", () => {
  it("uses the method's own timeout, by name or by full path, before the default", () => {
    const policy = deadlinePolicy({ defaultMs: 300, methodsMs: { GetProduct: 50, "/shop.orders.v1.OrderService/PlaceOrder": 900 } });
    assert.equal(timeoutFor(policy, "/shop.catalog.v1.CatalogService/GetProduct"), 50);
    assert.equal(timeoutFor(policy, "/shop.orders.v1.OrderService/PlaceOrder"), 900);
    assert.equal(timeoutFor(policy, "/shop.catalog.v1.CatalogService/ListProducts"), 300);
    assert.equal(timeoutFor(deadlinePolicy(), "/a.B/C"), DEFAULT_DEADLINE_MS);
  });

  it("keeps an explicit deadline and replaces a missing or infinite one", () => {
    const policy = deadlinePolicy({ defaultMs: 250 });
    const now = () => 1_000_000;
    assert.equal(resolveDeadline(policy, "/a.B/C", 1_000_042, now), 1_000_042);
    assert.equal(resolveDeadline(policy, "/a.B/C", undefined, now), 1_000_250);
    assert.equal(resolveDeadline(policy, "/a.B/C", Infinity, now), 1_000_250);
  });

  it("refuses a deadline that is zero, negative, infinite or not a number, naming the field", () => {
    assert.throws(() => deadlinePolicy({ defaultMs: 0 }), /deadlines\.defaultMs must be/);
    assert.throws(() => deadlinePolicy({ defaultMs: Infinity }), /deadlines\.defaultMs must be/);
    assert.throws(() => deadlinePolicy({ methodsMs: { GetProduct: -5 } }), /deadlines\.methodsMs\["GetProduct"\] must be/);
    assert.throws(() => deadlinePolicy({ methodsMs: { GetProduct: "soon" as unknown as number } }), /GetProduct/);
  });
});

describe("a call reset by its server at the deadline", () => {
  const cancelled = { code: status.CANCELLED, details: "Call cancelled", metadata: new Metadata() };

  it("ends DEADLINE_EXCEEDED once its deadline has passed, as grpc-go's reset at the deadline means", () => {
    const ended = atDeadline(cancelled, 1_000, 1_000);
    assert.equal(ended.code, status.DEADLINE_EXCEEDED);
    assert.equal(ended.details, RESET_AT_DEADLINE_DETAILS);
    assert.equal(ended.metadata, cancelled.metadata, "the trailers stay");
  });

  it("stays CANCELLED before its deadline, and any other status stays as it is", () => {
    assert.equal(atDeadline(cancelled, 1_000, 999), cancelled);
    assert.equal(atDeadline(cancelled, Infinity, 1_000), cancelled);
    const unavailable = { ...cancelled, code: status.UNAVAILABLE };
    assert.equal(atDeadline(unavailable, 1_000, 2_000), unavailable);
  });
});

describe("client deadlines on real calls", () => {
  let server: MeshServer;
  let log: CapturedLog;
  let address: string;
  let seenDeadlines: number[];

  before(async () => {
    log = captureLog();
    ({ server, address, deadlines: seenDeadlines } = await stalledCatalog(log.logger));
  });

  after(async () => {
    await server.drain(200);
  });

  it("gives a call without a deadline the method's configured timeout", async () => {
    const client = createClient(CatalogServiceClient, address, { logger: log.logger, methodDeadlinesMs: { GetProduct: 150 } });
    try {
      const startedAt = Date.now();
      const { error } = await callUnary(client.getProduct, client, { id: "sku-1001" });
      assert.equal(error?.code, status.DEADLINE_EXCEEDED);
      const deadline = seenDeadlines[seenDeadlines.length - 1];
      assert.ok(Number.isFinite(deadline), "the server saw a finite deadline");
      assert.ok(deadline - startedAt <= 150 + 50, `deadline ${deadline - startedAt} ms after the call`);
    } finally {
      client.close();
    }
  });

  it("lets an explicit deadline override the configured default", async () => {
    const client = createClient(CatalogServiceClient, address, { logger: log.logger, defaultDeadlineMs: 60_000 });
    try {
      const startedAt = Date.now();
      const { error } = await callUnary(client.getProduct, client, { id: "sku-1001" }, { deadline: Date.now() + 100 });
      assert.equal(error?.code, status.DEADLINE_EXCEEDED);
      const deadline = seenDeadlines[seenDeadlines.length - 1];
      assert.ok(deadline - startedAt <= 100 + 50, `deadline ${deadline - startedAt} ms after the call`);
    } finally {
      client.close();
    }
  });

  it("logs the deadline failure on the client at warn", async () => {
    const client = createClient(CatalogServiceClient, address, { logger: log.logger, defaultDeadlineMs: 50 });
    try {
      await callUnary(client.getProduct, client, { id: "sku-1001" });
      const line = log.lines.filter((entry) => entry.component === "client").pop();
      assert.equal(line?.code, "DEADLINE_EXCEEDED");
      assert.equal(line?.level, 40);
    } finally {
      client.close();
    }
  });
});

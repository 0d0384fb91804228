import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import type { ChildProcess } from "node:child_process";
import * as path from "node:path";
import * as readline from "node:readline";
import { status } from "@grpc/grpc-js";
import { CatalogServiceClient, CatalogServiceService } from "../../generated/ts/shop/catalog/v1/catalog";
import type { GetProductRequest, GetProductResponse } from "../../generated/ts/shop/catalog/v1/catalog";
import { HealthCheckResponse_ServingStatus as Serving, HealthClient } from "../../generated/ts/health/v1/health";
import type { HealthCheckResponse } from "../../generated/ts/health/v1/health";
import { OrderServiceClient } from "../../generated/ts/shop/orders/v1/orders";
import { createClient } from "../../mesh/client";
import { unary } from "../../mesh/handler";
import { createServer } from "../../mesh/server";
import { REPEAT_SIGNAL_WINDOW_MS, isEscalation } from "../../mesh/shutdown";
import { catalogService } from "../../services/catalog/catalog-service";
import { callUnary, gate } from "../support/calls";
import { stalledCatalog } from "../support/shop";
import { captureLog } from "../support/log-capture";
import { waitFor } from "../support/wait";

/** A catalog whose GetProduct waits for the test to open the gate. */
async function gatedCatalog(drainGraceMs = 5_000) {
  const log = captureLog();
  const release = gate();
  let started = 0;
  const server = createServer({ name: "catalog", logger: log.logger, drainGraceMs });
  server.addService(CatalogServiceService, {
    ...catalogService(),
    getProduct: unary<GetProductRequest, GetProductResponse>(async ({ id }) => {
      started += 1;
      await release.opened;
      return { product: { id, name: "slow", description: "", priceCents: 1, currency: "EUR", tags: [] } };
    }),
  });
  const port = await server.listen();
  const client = createClient(CatalogServiceClient, `127.0.0.1:${port}`, { logger: log.logger, defaultDeadlineMs: 20_000 });
  return { server, client, release, log, port, started: () => started };
}

describe("server drain", () => {
  const cleanups: (() => unknown)[] = [];
  afterEach(async () => {
    for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
  });

  it("finishes every in-flight call before it stops and refuses to report SERVING meanwhile", async () => {
    const { server, client, release, port, started, log } = await gatedCatalog();
    cleanups.push(() => client.close());
    const health = createClient(HealthClient, `127.0.0.1:${port}`, { logger: log.logger });
    cleanups.push(() => health.close());
    const calls = Array.from({ length: 8 }, (_, index) => callUnary(client.getProduct, client, { id: `sku-${index}` }));
    await waitFor("8 calls in the handler", () => started() === 8);
    assert.equal(server.inflightCalls, 8);

    const drained = server.drain();
    const checked = await callUnary(health.check, health, { service: "" });
    // The check either reaches the draining server (NOT_SERVING) or is refused: never SERVING.
    assert.notEqual(checked.response?.status, Serving.SERVING);
    release.open();
    const outcomes = await Promise.all(calls);
    await drained;
    assert.deepEqual(outcomes.map((outcome) => outcome.error?.code ?? "OK"), Array(8).fill("OK"));
  });

  it("ends health Watch streams after they have seen NOT_SERVING", async () => {
    const { server, client, port, log } = await gatedCatalog();
    cleanups.push(() => client.close());
    const health = createClient(HealthClient, `127.0.0.1:${port}`, { logger: log.logger, defaultDeadlineMs: 20_000 });
    cleanups.push(() => health.close());
    const seen: Serving[] = [];
    const stream = health.watch({ service: "shop.catalog.v1.CatalogService" });
    const ended = new Promise<number>((resolve) => {
      stream.on("data", (message: HealthCheckResponse) => {
        seen.push(message.status);
        if (message.status === Serving.SERVING) void server.drain();
      });
      stream.on("error", (error: { code: number }) => resolve(error.code));
      stream.on("end", () => resolve(status.OK));
    });
    const code = await ended;
    assert.deepEqual(seen, [Serving.SERVING, Serving.NOT_SERVING]);
    assert.equal(code, status.UNAVAILABLE);
  });

  it("cancels calls still running when the grace period is over", async () => {
    const { server, client, release, started, log } = await gatedCatalog(200);
    cleanups.push(() => client.close());
    cleanups.push(() => release.open());
    const call = callUnary(client.getProduct, client, { id: "sku-1" });
    await waitFor("the call in the handler", () => started() === 1);
    const startedAt = Date.now();
    await server.drain();
    assert.ok(Date.now() - startedAt < 5_000, "drain returns soon after the grace period");
    const { error } = await call;
    assert.ok(error, "the call did not complete");
    assert.ok([status.CANCELLED, status.UNAVAILABLE, status.INTERNAL].includes(error.code), `code ${error.code}`);
    assert.ok(log.lines.some((line) => line.msg === "grace period over; cancelling calls in flight"));
  });

  it("is idempotent: a second drain returns the same completion", async () => {
    const { server, client } = await gatedCatalog();
    cleanups.push(() => client.close());
    const first = server.drain();
    assert.equal(server.drain(), first);
    await first;
  });

  /** Starts a reference service as its own process; resolves once it reports SERVING, with its log lines and port. */
  async function serviceProcess(
    service: "catalog" | "orders",
    env: Record<string, string> = {},
  ): Promise<{ child: ChildProcess; lines: Record<string, unknown>[]; exited: Promise<number | null>; port: number }> {
    const script = path.resolve(__dirname, "..", "..", "services", service, "main.js");
    const child = spawn(process.execPath, [script], {
      // Orders in memory: the default store, a file under the working directory, would outlive the test.
      env: { ...process.env, PORT: "0", PROTOMESH_LOG_LEVEL: "info", PROTOMESH_CONTROL_PLANE: "", ORDERS_STORE_URL: "sqlite::memory:", ...env },
      stdio: ["ignore", "pipe", "inherit"],
    });
    cleanups.push(() => child.exitCode === null && child.kill("SIGKILL"));
    const exited = new Promise<number | null>((resolve) => child.on("exit", (code) => resolve(code)));
    const lines: Record<string, unknown>[] = [];
    readline.createInterface({ input: child.stdout! }).on("line", (line) => lines.push(JSON.parse(line)));
    await waitFor("the service to listen", () => lines.some((line) => line.msg === "listening"), 10_000);
    const port = lines.find((line) => line.msg === "listening")?.port as number;
    const health = createClient(HealthClient, `127.0.0.1:${port}`, { logger: captureLog().logger });
    cleanups.push(() => health.close());
    assert.equal((await callUnary(health.check, health, { service: "" })).response?.status, Serving.SERVING);
    return { child, lines, exited, port };
  }

  it("drains and exits 0 when the service process gets SIGTERM", async () => {
    const { child, lines, exited } = await serviceProcess("catalog");
    child.kill("SIGTERM");
    assert.equal(await exited, 0);
    const messages = lines.map((line) => line.msg);
    assert.ok(messages.indexOf("draining") < messages.indexOf("stopped"), messages.join(", "));
  });

  it("takes SIGTERM arriving twice at once (a group kill, forwarded again) as one request, and still drains", async () => {
    // An order in flight holds the drain open: its catalog never answers, so it lasts until the
    // catalog call's 1 s deadline.
    const stalled = await stalledCatalog(captureLog().logger);
    cleanups.push(() => stalled.server.drain(100));
    const { child, lines, exited, port } = await serviceProcess("orders", { CATALOG_TARGET: stalled.address });
    const orders = createClient(OrderServiceClient, `127.0.0.1:${port}`, { logger: captureLog().logger });
    cleanups.push(() => orders.close());
    const order = callUnary(orders.placeOrder, orders, { customerId: "c", items: [{ productId: "sku-1001", quantity: 1 }], idempotencyKey: "k" });
    await waitFor("the order to reach the catalog", () => stalled.deadlines.length === 1);
    child.kill("SIGTERM");
    await waitFor("the first signal to be handled", () => lines.some((line) => line.msg === "shutdown requested"));
    child.kill("SIGTERM");
    assert.equal(await exited, 0);
    assert.equal((await order).error?.code, status.DEADLINE_EXCEEDED, "the order in flight got its answer");
    const messages = lines.map((line) => line.msg);
    assert.deepEqual(messages.filter((msg) => msg === "shutdown requested"), ["shutdown requested"]);
    assert.ok(messages.includes("already draining (a second Ctrl-C exits at once)"), messages.join(", "));
    assert.ok(messages.indexOf("draining") < messages.indexOf("stopped"), messages.join(", "));
  });

  it("escalates only on a deliberate second Ctrl-C: SIGINT a moment after the first", () => {
    assert.equal(isEscalation("SIGINT", REPEAT_SIGNAL_WINDOW_MS), true);
    assert.equal(isEscalation("SIGINT", REPEAT_SIGNAL_WINDOW_MS - 1), false, "the same keypress seen twice");
    assert.equal(isEscalation("SIGTERM", 60_000), false, "orchestrators escalate with SIGKILL, never a second SIGTERM");
    assert.equal(isEscalation("SIGHUP", 60_000), false);
  });
});

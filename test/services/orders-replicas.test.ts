import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import type { ChildProcess } from "node:child_process";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import * as readline from "node:readline";
import { status } from "@grpc/grpc-js";
import { CatalogServiceService } from "../../generated/ts/shop/catalog/v1/catalog";
import type { GetProductRequest, GetProductResponse } from "../../generated/ts/shop/catalog/v1/catalog";
import { OrderServiceClient } from "../../generated/ts/shop/orders/v1/orders";
import type { PlaceOrderRequest } from "../../generated/ts/shop/orders/v1/orders";
import { createClient } from "../../mesh/client";
import { MeshError } from "../../mesh/errors";
import { unary } from "../../mesh/handler";
import { createServer } from "../../mesh/server";
import type { MeshServer } from "../../mesh/server";
import { SEED_PRODUCTS } from "../../services/catalog/seed";
import { catalogService } from "../../services/catalog/catalog-service";
import { callUnary, expectOk, gate } from "../support/calls";
import { captureLog } from "../support/log-capture";
import { waitFor } from "../support/wait";

const ORDERS_MAIN = path.resolve(__dirname, "..", "..", "services", "orders", "main.js");
/** Bounds on a replica starting and stopping, far above what they take. */
const START_TIMEOUT_MS = 15_000;
const EXIT_TIMEOUT_MS = 15_000;

/** One orders process, its JSON log lines kept, and a client to it. */
interface OrdersProcess {
  child: ChildProcess;
  lines: Record<string, unknown>[];
  client: OrderServiceClient;
  /** The exit code, once the process has exited. */
  exited: Promise<number | null>;
}

/**
 * A catalog whose GetProduct answers only once `release` is called, counting the calls: it holds a
 * replica's order in the middle of its creation for as long as a test needs.
 */
async function heldCatalog(): Promise<{ server: MeshServer; address: string; calls: () => number; release(): void }> {
  let calls = 0;
  const held = gate();
  const server = createServer({ name: "catalog", logger: captureLog().logger });
  server.addService(CatalogServiceService, {
    ...catalogService(),
    getProduct: unary<GetProductRequest, GetProductResponse>(async ({ id }) => {
      calls += 1;
      await held.opened;
      const product = SEED_PRODUCTS.find((candidate) => candidate.id === id);
      if (!product) throw new MeshError(status.NOT_FOUND, `product ${JSON.stringify(id)} not found`);
      return { product };
    }),
  });
  const address = `127.0.0.1:${await server.listen()}`;
  return { server, address, calls: () => calls, release: held.open };
}

describe("orders replicas sharing one SQLite file (two orders processes)", function () {
  this.timeout(60_000);
  let dir: string;
  let catalog: Awaited<ReturnType<typeof heldCatalog>>;
  const cleanups: (() => unknown)[] = [];

  /** Starts `node dist/services/orders/main.js` on a free port with the test's store; resolves once it listens. */
  async function startReplica(): Promise<OrdersProcess> {
    const child = spawn(process.execPath, [ORDERS_MAIN], {
      cwd: dir,
      env: {
        ...process.env,
        PORT: "0",
        PROTOMESH_CONTROL_PLANE: "",
        PROTOMESH_LOG_LEVEL: "debug",
        CATALOG_TARGET: catalog.address,
        ORDERS_STORE_URL: "sqlite:orders.sqlite",
      },
      stdio: ["ignore", "pipe", "inherit"],
    });
    const exited = new Promise<number | null>((resolve) => child.once("close", (code) => resolve(code)));
    cleanups.push(async () => {
      if (child.exitCode !== null || child.signalCode !== null) return;
      child.kill("SIGTERM");
      const timer = setTimeout(() => child.kill("SIGKILL"), EXIT_TIMEOUT_MS);
      await exited;
      clearTimeout(timer);
    });
    const lines: Record<string, unknown>[] = [];
    readline.createInterface({ input: child.stdout! }).on("line", (line) => lines.push(JSON.parse(line) as Record<string, unknown>));
    await waitFor("the orders replica to listen", () => lines.some((line) => line.msg === "listening"), START_TIMEOUT_MS);
    const port = lines.find((line) => line.msg === "listening")?.port as number;
    const client = createClient(OrderServiceClient, `127.0.0.1:${port}`, { logger: captureLog().logger, defaultDeadlineMs: 10_000 });
    cleanups.push(() => client.close());
    // A first call connects the channel, so that the calls under test go out at once.
    await expectOk(client.listOrders, client, { customerId: "", pageSize: 0, pageToken: "" });
    return { child, lines, client, exited };
  }

  beforeEach(async () => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), "protomesh-orders-replicas-"));
    catalog = await heldCatalog();
  });

  afterEach(async () => {
    catalog.release();
    for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
    await catalog.server.drain(500);
    fs.rmSync(dir, { recursive: true, force: true });
  });

  const request: PlaceOrderRequest = { customerId: "cust-replicas", items: [{ productId: "sku-1001", quantity: 2 }], idempotencyKey: "hedged-1" };

  it("opens the SQLite file the setting names, relative to its working directory, says so, and exits 0 on SIGTERM", async () => {
    const replica = await startReplica();
    const file = path.join(fs.realpathSync(dir), "orders.sqlite");
    assert.ok(fs.existsSync(file));
    assert.ok(replica.lines.some((line) => line.msg === "order store open" && line.store === "sqlite" && fs.realpathSync(String(line.file)) === file));
    replica.child.kill("SIGTERM");
    assert.equal(await replica.exited, 0);
  });

  it("creates one order when the same PlaceOrder reaches both at once: the second waits for the first and returns it replayed", async () => {
    // Started together: both create the file's table at once.
    const [a, b] = await Promise.all([startReplica(), startReplica()]);
    const first = callUnary(a.client.placeOrder, a.client, request);
    await waitFor("replica A to price the order against the catalog", () => catalog.calls() === 1);
    const second = callUnary(b.client.placeOrder, b.client, request);
    await waitFor("replica B to wait for A's claim", () => b.lines.some((line) => line.msg === "waiting for another call placing this key"));
    catalog.release();
    const [created, replayed] = [await first, await second];
    assert.equal(created.error, undefined);
    assert.equal(replayed.error, undefined);
    assert.equal(created.response?.replayed, false);
    assert.equal(replayed.response?.replayed, true);
    assert.deepEqual(replayed.response?.order, created.response?.order);
    assert.equal(catalog.calls(), 1, "B never priced it");
    const listed = await expectOk(b.client.listOrders, b.client, { customerId: "cust-replicas", pageSize: 0, pageToken: "" });
    assert.deepEqual(listed.orders, [created.response?.order]);
  });

  it("returns the first replica's order, replayed, to a retry sent to the other later", async () => {
    // Started together: both create the file's table at once.
    const [a, b] = await Promise.all([startReplica(), startReplica()]);
    catalog.release();
    const created = await expectOk(a.client.placeOrder, a.client, request);
    const retried = await expectOk(b.client.placeOrder, b.client, request);
    assert.equal(created.replayed, false);
    assert.deepEqual(retried, { order: created.order, replayed: true });
    const fetched = await expectOk(b.client.getOrder, b.client, { id: created.order!.id });
    assert.deepEqual(fetched.order, created.order);
  });
});

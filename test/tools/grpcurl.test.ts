import * as assert from "node:assert/strict";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { status } from "@grpc/grpc-js";
import type { ServiceError } from "@grpc/grpc-js";
import { SEED_PRODUCTS } from "../../services/catalog/seed";
import { MeshFixture, getProduct } from "../mesh/controlplane/mesh-fixture";
import { startShop } from "../support/shop";
import type { Shop } from "../support/shop";
import { requireTool, runTool } from "../support/tools";
import type { ToolResult } from "../support/tools";
import { waitFor } from "../support/wait";

/** grpcurl's `-max-time` (s): a hung call ends as a failed test well before mocha's timeout. */
const GRPCURL_MAX_TIME_S = "10";
/** grpcurl exits with 64 + the status code when an RPC fails (cmd/grpcurl/grpcurl.go, `statusCodeOffset`). */
const GRPCURL_STATUS_EXIT_OFFSET = 64;
/** grpcurl's exit code for its own failures, before or without an RPC (`fail()` in cmd/grpcurl). */
const GRPCURL_FAILURE_EXIT = 1;

const CATALOG_SERVICE = "shop.catalog.v1.CatalogService";
const ORDER_SERVICE = "shop.orders.v1.OrderService";
const HEALTH_SERVICE = "grpc.health.v1.Health";
const FAULT_SERVICE = "protomesh.fault.v1.FaultService";

/** The JSON grpcurl prints for a shop.catalog.v1.Product (int64 fields as strings, proto3 JSON). */
interface ProductJson {
  id: string;
  name: string;
  description: string;
  priceCents: string;
  currency: string;
  tags: string[];
}

/** The JSON grpcurl prints for a shop.orders.v1.Order. */
interface OrderJson {
  id: string;
  customerId: string;
  lines: { productId: string; productName: string; quantity: number; unitPriceCents: string; lineTotalCents: string }[];
  totalCents: string;
  currency: string;
  status: string;
  createdAtMs: string;
  idempotencyKey: string;
}

/** A PlaceOrderResponse; proto3 JSON leaves `replayed` out when it is false. */
interface PlaceOrderJson {
  order: OrderJson;
  replayed?: boolean;
}

/**
 * grpcurl prints every response message as its own JSON document, one after another (a server
 * stream prints several): split them at depth zero, outside strings, and parse each.
 */
function parseMessages(stdout: string): unknown[] {
  const messages: unknown[] = [];
  let depth = 0;
  let start = 0;
  let isInString = false;
  let isEscaped = false;
  for (let i = 0; i < stdout.length; i += 1) {
    const char = stdout[i];
    if (isInString) {
      if (isEscaped) isEscaped = false;
      else if (char === "\\") isEscaped = true;
      else if (char === '"') isInString = false;
    } else if (char === '"') {
      isInString = true;
    } else if (char === "{") {
      if (depth === 0) start = i;
      depth += 1;
    } else if (char === "}") {
      depth -= 1;
      if (depth === 0) messages.push(JSON.parse(stdout.slice(start, i + 1)));
    }
  }
  assert.equal(depth, 0, `grpcurl printed an incomplete JSON message:\n${stdout}`);
  return messages;
}

/** The one message of a unary response. */
function parseMessage<T>(stdout: string): T {
  const messages = parseMessages(stdout);
  assert.equal(messages.length, 1, `expected one response message, got ${messages.length}:\n${stdout}`);
  return messages[0] as T;
}

/** The `name: value` lines of a section of grpcurl's `-v` output, e.g. "Response headers received:". */
function verboseSection(stdout: string, title: string): string[] {
  const lines = stdout.split("\n");
  const at = lines.indexOf(title);
  assert.notEqual(at, -1, `no "${title}" section in grpcurl -v output:\n${stdout}`);
  const end = lines.indexOf("", at + 1);
  return lines.slice(at + 1, end === -1 ? undefined : end);
}

/** The JSON grpcurl prints for a protomesh.fault.v1.Fault (durations and timestamps as strings). */
interface FaultJson {
  id: string;
  service: string;
  method?: string;
  abort?: { code: number; percent: number };
  expireTime: string;
  remainingTtl: string;
}

/** Asserts that grpcurl succeeded, showing its stderr when it did not. */
function assertSucceeded(result: ToolResult): void {
  assert.equal(result.code, 0, `grpcurl exited ${result.code}\nstdout: ${result.stdout}\nstderr: ${result.stderr}`);
}

/** Asserts that the RPC failed with `code`: grpcurl's exit code and its printed `Code:` line. */
function assertFailedWith(result: ToolResult, code: status, codeName: string): void {
  assert.equal(
    result.code,
    GRPCURL_STATUS_EXIT_OFFSET + code,
    `expected exit ${GRPCURL_STATUS_EXIT_OFFSET + code} (${codeName}), got ${result.code}\nstderr: ${result.stderr}`,
  );
  assert.match(result.stderr, new RegExp(`^ERROR:\\n  Code: ${codeName}\\n`, "m"));
}

describe("grpcurl against the reference services", function () {
  let grpcurl = "";
  let shop: Shop | undefined;
  let catalog = "";
  let orders = "";

  before(async function () {
    grpcurl = requireTool(this, "grpcurl");
    shop = await startShop();
    catalog = shop.catalogAddress;
    orders = shop.ordersAddress;
  });

  after(async function () {
    await shop?.stop();
  });

  /** Runs grpcurl in plaintext with a bounded time: `grpcurl [flags] address [command...]`. */
  function grpcurlAt(address: string, flags: string[], ...command: string[]): Promise<ToolResult> {
    return runTool(grpcurl, ["-plaintext", "-max-time", GRPCURL_MAX_TIME_S, ...flags, address, ...command]);
  }

  /** Calls `method` ("package.Service/Method") with `request` as JSON. */
  function invoke(address: string, method: string, request: object, flags: string[] = []): Promise<ToolResult> {
    return grpcurlAt(address, ["-d", JSON.stringify(request), ...flags], method);
  }

  describe("server reflection", function () {
    it("lists CatalogService and grpc.health.v1.Health on the catalog server", async function () {
      const result = await grpcurlAt(catalog, [], "list");
      assertSucceeded(result);
      const services = result.stdout.trim().split("\n");
      assert.ok(services.includes(CATALOG_SERVICE), `catalog lists ${services.join(", ")}`);
      assert.ok(services.includes(HEALTH_SERVICE), `catalog lists ${services.join(", ")}`);
    });

    it("lists OrderService and grpc.health.v1.Health on the orders server, and not the catalog", async function () {
      const result = await grpcurlAt(orders, [], "list");
      assertSucceeded(result);
      const services = result.stdout.trim().split("\n");
      assert.ok(services.includes(ORDER_SERVICE), `orders lists ${services.join(", ")}`);
      assert.ok(services.includes(HEALTH_SERVICE), `orders lists ${services.join(", ")}`);
      assert.ok(!services.includes(CATALOG_SERVICE), "orders must not advertise a service it does not serve");
    });

    it("describes CatalogService with its three rpcs, SearchProducts returning a stream", async function () {
      const result = await grpcurlAt(catalog, [], "describe", CATALOG_SERVICE);
      assertSucceeded(result);
      assert.match(result.stdout, /^shop\.catalog\.v1\.CatalogService is a service:$/m);
      const rpcs = result.stdout.split("\n").filter((line) => line.trim().startsWith("rpc "));
      assert.equal(rpcs.length, 3, result.stdout);
      assert.ok(
        result.stdout.includes(
          "rpc GetProduct ( .shop.catalog.v1.GetProductRequest ) returns ( .shop.catalog.v1.GetProductResponse );",
        ),
        result.stdout,
      );
      assert.ok(
        result.stdout.includes(
          "rpc ListProducts ( .shop.catalog.v1.ListProductsRequest ) returns ( .shop.catalog.v1.ListProductsResponse );",
        ),
        result.stdout,
      );
      assert.ok(
        result.stdout.includes(
          "rpc SearchProducts ( .shop.catalog.v1.SearchProductsRequest ) returns ( stream .shop.catalog.v1.SearchProductsResponse );",
        ),
        result.stdout,
      );
    });

    it("describes the Product message with its fields, price_cents as int64", async function () {
      const result = await grpcurlAt(catalog, [], "describe", "shop.catalog.v1.Product");
      assertSucceeded(result);
      assert.match(result.stdout, /^shop\.catalog\.v1\.Product is a message:$/m);
      for (const field of [
        "string id = 1;",
        "string name = 2;",
        "string description = 3;",
        "int64 price_cents = 4;",
        "string currency = 5;",
        "repeated string tags = 6;",
      ]) {
        assert.ok(result.stdout.includes(field), `missing "${field}" in:\n${result.stdout}`);
      }
    });
  });

  describe("load reports (ORCA)", function () {
    it("describes OpenRcaService and streams the catalog's load, its event-loop utilisation first", async function () {
      const described = await grpcurlAt(catalog, [], "describe", "xds.service.orca.v3.OpenRcaService");
      assertSucceeded(described);
      assert.match(described.stdout, /rpc StreamCoreMetrics .* returns \( stream \.xds\.data\.orca\.v3\.OrcaLoadReport \)/);
      // The stream stays open (a report every report_interval); grpcurl's -max-time ends it.
      const streamed = await runTool(grpcurl, [
        "-plaintext", "-max-time", "1.5", "-d", '{"report_interval": "1s"}', catalog, "xds.service.orca.v3.OpenRcaService/StreamCoreMetrics",
      ]);
      const [first] = parseMessages(streamed.stdout) as { memUtilization?: number; applicationUtilization?: number }[];
      assert.ok(first, `no report streamed: ${streamed.stderr}`);
      assert.ok((first.memUtilization ?? 0) > 0 && (first.applicationUtilization ?? 0) >= 0, JSON.stringify(first));
    });
  });

  describe("catalog calls", function () {
    it("GetProduct returns the product as JSON, with the int64 price printed as a string", async function () {
      const result = await invoke(catalog, `${CATALOG_SERVICE}/GetProduct`, { id: "sku-1001" });
      assertSucceeded(result);
      const { product } = parseMessage<{ product: ProductJson }>(result.stdout);
      assert.deepEqual(product, {
        id: "sku-1001",
        name: "Espresso beans 1 kg",
        description: "Dark roast, notes of cocoa",
        priceCents: "2490",
        currency: "EUR",
        tags: ["coffee", "beans"],
      });
    });

    it("SearchProducts streams one message per matching product, in id order", async function () {
      const expectedIds = SEED_PRODUCTS.filter((product) =>
        [product.name, product.description, ...product.tags].some((text) => text.toLowerCase().includes("coffee")),
      )
        .map((product) => product.id)
        .sort();
      assert.ok(expectedIds.length > 2, "the seed should hold several coffee products");
      const result = await invoke(catalog, `${CATALOG_SERVICE}/SearchProducts`, { query: "Coffee" });
      assertSucceeded(result);
      const messages = parseMessages(result.stdout) as { product: ProductJson }[];
      assert.deepEqual(
        messages.map((message) => message.product.id),
        expectedIds,
      );
    });

    it("SearchProducts with a limit streams no more than the limit", async function () {
      const result = await invoke(catalog, `${CATALOG_SERVICE}/SearchProducts`, { query: "tea", limit: 2 });
      assertSucceeded(result);
      const messages = parseMessages(result.stdout) as { product: ProductJson }[];
      assert.deepEqual(
        messages.map((message) => message.product.id),
        ["sku-1003", "sku-1004"],
      );
    });

    it("ListProducts with page_size 5 returns five products and a next_page_token that reaches the next page", async function () {
      const first = await invoke(catalog, `${CATALOG_SERVICE}/ListProducts`, { page_size: 5 });
      assertSucceeded(first);
      const page1 = parseMessage<{ products: ProductJson[]; nextPageToken?: string; totalSize: number }>(first.stdout);
      assert.deepEqual(
        page1.products.map((product) => product.id),
        ["sku-1001", "sku-1002", "sku-1003", "sku-1004", "sku-1005"],
      );
      assert.equal(page1.totalSize, SEED_PRODUCTS.length);
      assert.ok(page1.nextPageToken, `no nextPageToken in ${first.stdout}`);

      const second = await invoke(catalog, `${CATALOG_SERVICE}/ListProducts`, {
        page_size: 5,
        page_token: page1.nextPageToken,
      });
      assertSucceeded(second);
      const page2 = parseMessage<{ products: ProductJson[] }>(second.stdout);
      assert.equal(page2.products[0]?.id, "sku-1006");
    });
  });

  describe("order calls", function () {
    const placeOrder = (idempotencyKey: string, items: object[]) =>
      invoke(orders, `${ORDER_SERVICE}/PlaceOrder`, { customer_id: "cust-grpcurl", items, idempotency_key: idempotencyKey });

    it("PlaceOrder prices the lines against the catalog: 2 × 2490 gives total_cents \"4980\"", async function () {
      const result = await placeOrder("grpcurl-total", [{ product_id: "sku-1001", quantity: 2 }]);
      assertSucceeded(result);
      const response = parseMessage<PlaceOrderJson>(result.stdout);
      assert.notEqual(response.replayed, true);
      assert.match(response.order.id, /^ord-\d+$/);
      assert.equal(response.order.customerId, "cust-grpcurl");
      assert.equal(response.order.totalCents, "4980");
      assert.equal(response.order.currency, "EUR");
      assert.equal(response.order.status, "ORDER_STATUS_PLACED");
      assert.deepEqual(response.order.lines, [
        {
          productId: "sku-1001",
          productName: "Espresso beans 1 kg",
          quantity: 2,
          unitPriceCents: "2490",
          lineTotalCents: "4980",
        },
      ]);
    });

    it("PlaceOrder repeated with the same idempotency_key returns the same order with replayed true", async function () {
      const items = [{ product_id: "sku-1001", quantity: 2 }];
      const first = await placeOrder("grpcurl-replay", items);
      assertSucceeded(first);
      const second = await placeOrder("grpcurl-replay", items);
      assertSucceeded(second);
      const placed = parseMessage<PlaceOrderJson>(first.stdout);
      const replayed = parseMessage<PlaceOrderJson>(second.stdout);
      assert.notEqual(placed.replayed, true);
      assert.equal(replayed.replayed, true);
      assert.deepEqual(replayed.order, placed.order);

      const other = await placeOrder("grpcurl-replay-other", items);
      assertSucceeded(other);
      assert.notEqual(parseMessage<PlaceOrderJson>(other.stdout).order.id, placed.order.id);
    });
  });

  describe("errors", function () {
    it("PlaceOrder with quantity 0 fails InvalidArgument naming items[0].quantity", async function () {
      const result = await invoke(orders, `${ORDER_SERVICE}/PlaceOrder`, {
        customer_id: "cust-grpcurl",
        items: [{ product_id: "sku-1001", quantity: 0 }],
        idempotency_key: "grpcurl-invalid",
      });
      assertFailedWith(result, status.INVALID_ARGUMENT, "InvalidArgument");
      assert.match(result.stderr, /^ {2}Message: items\[0\]\.quantity: /m);
      assert.equal(result.stdout, "");
    });

    it("PlaceOrder of a product the catalog lacks fails NotFound naming items[0].product_id", async function () {
      const result = await invoke(orders, `${ORDER_SERVICE}/PlaceOrder`, {
        customer_id: "cust-grpcurl",
        items: [{ product_id: "sku-0000", quantity: 1 }],
        idempotency_key: "grpcurl-unknown-product",
      });
      assertFailedWith(result, status.NOT_FOUND, "NotFound");
      assert.match(result.stderr, /^ {2}Message: items\[0\]\.product_id: product "sku-0000" not found$/m);
    });

    it("GetProduct of an unknown id fails NotFound", async function () {
      const result = await invoke(catalog, `${CATALOG_SERVICE}/GetProduct`, { id: "sku-9999" });
      assertFailedWith(result, status.NOT_FOUND, "NotFound");
      assert.match(result.stderr, /^ {2}Message: product "sku-9999" not found$/m);
    });

    it("refuses a method that reflection does not describe, without calling the server", async function () {
      // With reflection, grpcurl resolves the method first and fails on its own (exit 1); the
      // server's UNIMPLEMENTED is only reachable with a schema that names the method (next test).
      const result = await invoke(catalog, `${CATALOG_SERVICE}/RemovedMethod`, {});
      assert.equal(result.code, GRPCURL_FAILURE_EXIT, result.stderr);
      assert.match(
        result.stderr,
        /service "shop\.catalog\.v1\.CatalogService" does not include a method named "RemovedMethod"/,
      );
    });

    describe("with a .proto that declares a method the server lacks", function () {
      let protoDir = "";

      before(function () {
        protoDir = fs.mkdtempSync(path.join(os.tmpdir(), "protomesh-grpcurl-"));
        fs.writeFileSync(
          path.join(protoDir, "removed.proto"),
          [
            'syntax = "proto3";',
            "package shop.catalog.v1;",
            "message RemovedRequest {}",
            "message RemovedResponse {}",
            "service CatalogService {",
            "  rpc RemovedMethod(RemovedRequest) returns (RemovedResponse);",
            "}",
            "",
          ].join("\n"),
        );
      });

      after(function () {
        if (protoDir) fs.rmSync(protoDir, { recursive: true, force: true });
      });

      it("the server answers Unimplemented for the unknown method", async function () {
        const result = await invoke(catalog, `${CATALOG_SERVICE}/RemovedMethod`, {}, [
          "-import-path",
          protoDir,
          "-proto",
          "removed.proto",
        ]);
        assertFailedWith(result, status.UNIMPLEMENTED, "Unimplemented");
        assert.match(result.stderr, /\/shop\.catalog\.v1\.CatalogService\/RemovedMethod/);
      });
    });
  });

  describe("grpc.health.v1", function () {
    it("Check reports SERVING for shop.catalog.v1.CatalogService", async function () {
      const result = await invoke(catalog, `${HEALTH_SERVICE}/Check`, { service: CATALOG_SERVICE });
      assertSucceeded(result);
      assert.deepEqual(parseMessage(result.stdout), { status: "SERVING" });
    });

    it("Check reports SERVING for the whole server (empty service name)", async function () {
      const result = await invoke(orders, `${HEALTH_SERVICE}/Check`, { service: "" });
      assertSucceeded(result);
      assert.deepEqual(parseMessage(result.stdout), { status: "SERVING" });
    });

    it("Check of a service the server does not host fails NotFound", async function () {
      const result = await invoke(catalog, `${HEALTH_SERVICE}/Check`, { service: "shop.nope.v1.NopeService" });
      assertFailedWith(result, status.NOT_FOUND, "NotFound");
    });
  });

  describe("x-request-id", function () {
    it("echoes the caller's x-request-id in the response headers", async function () {
      const result = await invoke(catalog, `${CATALOG_SERVICE}/GetProduct`, { id: "sku-1001" }, [
        "-H",
        "x-request-id: test-123",
        "-v",
      ]);
      assertSucceeded(result);
      assert.ok(verboseSection(result.stdout, "Request metadata to send:").includes("x-request-id: test-123"));
      const headers = verboseSection(result.stdout, "Response headers received:");
      assert.ok(headers.includes("x-request-id: test-123"), `response headers: ${headers.join(" | ")}`);
    });

    it("echoes x-request-id in the trailers of an error sent without headers (trailers-only)", async function () {
      const result = await invoke(catalog, `${CATALOG_SERVICE}/GetProduct`, { id: "sku-9999" }, [
        "-H",
        "x-request-id: test-404",
        "-v",
      ]);
      assertFailedWith(result, status.NOT_FOUND, "NotFound");
      const trailers = verboseSection(result.stdout, "Response trailers received:");
      assert.ok(trailers.includes("x-request-id: test-404"), `response trailers: ${trailers.join(" | ")}`);
    });

    it("sends a generated x-request-id when the caller gives none", async function () {
      const result = await invoke(catalog, `${CATALOG_SERVICE}/GetProduct`, { id: "sku-1001" }, ["-v"]);
      assertSucceeded(result);
      const headers = verboseSection(result.stdout, "Response headers received:");
      const echoed = headers.find((line) => line.startsWith("x-request-id: "));
      assert.ok(echoed, `no x-request-id in response headers: ${headers.join(" | ")}`);
      assert.match(echoed, /^x-request-id: [0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/);
    });
  });

  describe("the control plane's fault injection API", function () {
    let mesh: MeshFixture;

    before(async function () {
      mesh = new MeshFixture();
      await mesh.startControlPlane();
      await mesh.startReplica();
      await mesh.waitHealthy(1);
    });

    after(async function () {
      await mesh?.stop();
    });

    it("lists FaultService, injects an abort on GetProduct that an xDS client sees, lists it and clears it", async function () {
      const listed = await grpcurlAt(mesh.address, [], "list");
      assertSucceeded(listed);
      assert.ok(listed.stdout.trim().split("\n").includes(FAULT_SERVICE), listed.stdout);

      const injected = await invoke(mesh.address, `${FAULT_SERVICE}/InjectFault`, {
        service: "catalog",
        method: `${CATALOG_SERVICE}/GetProduct`,
        abort: { code: status.UNAVAILABLE, percent: 100 },
        ttl: "60s",
      });
      assertSucceeded(injected);
      const { fault } = parseMessage<{ fault: FaultJson }>(injected.stdout);
      assert.match(fault.id, /^[0-9a-f]{8}$/);
      assert.deepEqual(fault.abort, { code: status.UNAVAILABLE, percent: 100 });
      assert.ok(Math.abs(Date.parse(fault.expireTime) - Date.now() - 60_000) < 5_000, `expires at ${fault.expireTime}`);

      const client = mesh.catalogClient();
      let failure: ServiceError | undefined;
      await waitFor("the fault to reach the xDS client", async () => {
        failure = await getProduct(client).then(() => undefined, (error: ServiceError) => error);
        return failure !== undefined;
      }, 10_000, 0);
      assert.equal(failure?.code, status.UNAVAILABLE);
      assert.equal(failure.details, "Fault injected");

      const active = await invoke(mesh.address, `${FAULT_SERVICE}/ListFaults`, {});
      assertSucceeded(active);
      const { faults } = parseMessage<{ faults: FaultJson[] }>(active.stdout);
      assert.deepEqual(faults.map((listedFault) => [listedFault.id, listedFault.method]), [[fault.id, `${CATALOG_SERVICE}/GetProduct`]]);
      assert.match(faults[0].remainingTtl, /^\d+(\.\d+)?s$/);
      assert.ok(parseFloat(faults[0].remainingTtl) > 50, `remaining ${faults[0].remainingTtl}`);

      const cleared = await invoke(mesh.address, `${FAULT_SERVICE}/ClearFault`, { id: fault.id });
      assertSucceeded(cleared);
      assert.equal(parseMessage<{ fault: FaultJson }>(cleared.stdout).fault.id, fault.id);
      const none = await invoke(mesh.address, `${FAULT_SERVICE}/ListFaults`, {});
      assertSucceeded(none);
      assert.deepEqual(parseMessage(none.stdout), {});
    });

    it("InjectFault with a percent over 100 fails InvalidArgument naming abort.percent", async function () {
      const result = await invoke(mesh.address, `${FAULT_SERVICE}/InjectFault`, { service: "catalog", abort: { code: 14, percent: 150 } });
      assertFailedWith(result, status.INVALID_ARGUMENT, "InvalidArgument");
      assert.match(result.stderr, /^ {2}Message: abort\.percent: must be a percentage from 0\.0001 to 100$/m);
    });
  });
});

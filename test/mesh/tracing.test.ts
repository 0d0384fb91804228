import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import type { ChildProcess } from "node:child_process";
import * as path from "node:path";
import { CatalogServiceClient, CatalogServiceService } from "../../generated/ts/shop/catalog/v1/catalog";
import type { CatalogServiceServer } from "../../generated/ts/shop/catalog/v1/catalog";
import { createClient, createServer, tracingFromEnvironment, unary } from "../../mesh";
import type { MeshServer, ProcessTracing } from "../../mesh";
import { batchFromEnvironment, samplerFromEnvironment } from "../../mesh/tracing";
import { catalogService } from "../../services/catalog/catalog-service";
import { captureLog } from "../support/log-capture";
import { getProduct } from "../support/shop";
import { waitFor } from "../support/wait";
import { OrderServiceClient } from "../../generated/ts/shop/orders/v1/orders";
import { waitForServing } from "../../cli/health-wait";
import { freePorts } from "../support/ports";
import { repoRoot } from "../support/tools";
import { SPAN_KIND, otlpReceiver } from "../support/otlp-receiver";
import { startTestGateway } from "../gateway/gateway-fixture";

describe("tracing: one span per call on each side, the W3C traceparent across the hops", function () {
  this.timeout(20_000);

  it("follows one call from a client through a front server to the catalog: client → server → client → server, one trace; a health check makes no span", async () => {
    const receiver = await otlpReceiver();
    const { logger } = captureLog("warn");
    const tracing = (name: string): ProcessTracing => tracingFromEnvironment({ OTEL_EXPORTER_OTLP_ENDPOINT: receiver.url }, name)!;
    const [catalogTracing, frontTracing, callerTracing] = [tracing("catalog"), tracing("front"), tracing("caller")];
    const servers: MeshServer[] = [];
    const clients: CatalogServiceClient[] = [];
    try {
      const catalog = createServer({ name: "catalog", logger, tracer: catalogTracing.tracer });
      catalog.addService(CatalogServiceService, catalogService());
      servers.push(catalog);
      const catalogAddress = `127.0.0.1:${await catalog.listen("127.0.0.1:0")}`;
      // The front's handler calls the catalog: its call is the child of the front's server span.
      const downstream = createClient(CatalogServiceClient, catalogAddress, { logger, tracer: frontTracing.tracer });
      clients.push(downstream);
      const front = createServer({ name: "front", logger, tracer: frontTracing.tracer });
      const relay: CatalogServiceServer = {
        ...catalogService(),
        getProduct: unary((request) => new Promise((resolve, reject) => downstream.getProduct(request, (error, response) => (error ? reject(error) : resolve(response))))),
      };
      front.addService(CatalogServiceService, relay);
      servers.push(front);
      const caller = createClient(CatalogServiceClient, `127.0.0.1:${await front.listen("127.0.0.1:0")}`, { logger, tracer: callerTracing.tracer });
      clients.push(caller);

      const response = await getProduct(caller, 5_000);
      assert.equal(response.product?.id, "sku-1001");
      // A health check (what the control plane's prober sends every second) makes no span.
      await waitForServing(catalogAddress, 5_000);
      for (const processTracing of [catalogTracing, frontTracing, callerTracing]) await processTracing.shutdown();
      await waitFor("the four spans at the receiver", () => receiver.spans.filter((span) => span.name === "shop.catalog.v1.CatalogService/GetProduct").length >= 4);

      assert.deepEqual(receiver.spans.filter((span) => span.name.startsWith("grpc.health.v1.")), [], "no span for a health check");
      const spans = receiver.spans.filter((span) => span.name === "shop.catalog.v1.CatalogService/GetProduct");
      const find = (service: string, kind: number) => spans.find((span) => span.service === service && span.kind === kind)!;
      const { SERVER, CLIENT } = SPAN_KIND;
      const chain = [find("caller", CLIENT), find("front", SERVER), find("front", CLIENT), find("catalog", SERVER)];
      assert.ok(chain.every((span) => span !== undefined), `spans: ${spans.map((span) => `${span.service}/${span.kind}`).join(", ")}`);
      assert.equal(new Set(chain.map((span) => span.traceId)).size, 1, "one trace");
      assert.equal(chain[0].parentSpanId, "", "the caller's span is the root");
      for (let i = 1; i < chain.length; i += 1) {
        assert.equal(chain[i].parentSpanId, chain[i - 1].spanId, `${chain[i].service}'s span is the child of ${chain[i - 1].service}'s`);
      }
      for (const span of chain) {
        assert.equal(span.attributes["rpc.system"], "grpc");
        assert.equal(span.attributes["rpc.service"], "shop.catalog.v1.CatalogService");
        assert.equal(span.attributes["rpc.method"], "GetProduct");
        assert.equal(span.attributes["rpc.grpc.status_code"], 0);
      }
    } finally {
      for (const client of clients) client.close();
      for (const server of servers) await server.drain(0);
      await receiver.close();
    }
  });

  it("carries an HTTP caller's traceparent through the gateway: its client span is the caller's child (and an untraced gateway passes the context on)", async () => {
    const receiver = await otlpReceiver();
    const { logger } = captureLog("warn");
    const tracing = (name: string): ProcessTracing => tracingFromEnvironment({ OTEL_EXPORTER_OTLP_ENDPOINT: receiver.url }, name)!;
    const [catalogTracing, gatewayTracing] = [tracing("catalog"), tracing("gateway")];
    const catalog = createServer({ name: "catalog", logger, tracer: catalogTracing.tracer });
    catalog.addService(CatalogServiceService, catalogService());
    const address = `127.0.0.1:${await catalog.listen("127.0.0.1:0")}`;
    const traced = await startTestGateway(logger, { catalog: address }, { tracer: gatewayTracing.tracer });
    const untraced = await startTestGateway(logger, { catalog: address });
    const traceId = "4bf92f3577b34da6a3ce929d0e0e4736";
    const [tracedCaller, untracedCaller] = ["00f067aa0ba902b7", "53995c3f42cd8ad8"];
    try {
      for (const [gateway, caller] of [[traced, tracedCaller], [untraced, untracedCaller]] as const) {
        const response = await fetch(`${gateway.url}/v1/products/sku-1001`, { headers: { traceparent: `00-${traceId}-${caller}-01`, tracestate: "vendor=1" } });
        assert.equal(response.status, 200);
      }
      await catalogTracing.shutdown();
      await gatewayTracing.shutdown();
      const { SERVER, CLIENT } = SPAN_KIND;
      const NAME = "shop.catalog.v1.CatalogService/GetProduct";
      const spans = receiver.spans.filter((span) => span.name === NAME);
      const gatewayCall = spans.find((span) => span.service === "gateway" && span.kind === CLIENT);
      assert.ok(gatewayCall, `the gateway's client span: ${JSON.stringify(spans)}`);
      assert.equal(gatewayCall.traceId, traceId, "the caller's trace");
      assert.equal(gatewayCall.parentSpanId, tracedCaller, "the child of the caller's span");
      const served = spans.filter((span) => span.service === "catalog" && span.kind === SERVER);
      assert.deepEqual(
        served.map((span) => [span.traceId, span.parentSpanId]).sort(),
        [[traceId, gatewayCall.spanId], [traceId, untracedCaller]].sort(),
        "the catalog's spans: the traced gateway's child, and the caller's own child through the untraced gateway",
      );
    } finally {
      await traced.close();
      await untraced.close();
      await catalog.drain(0);
      await receiver.close();
    }
  });

  it("samples as OTEL_TRACES_SAMPLER says, and refuses a sampler or ratio it does not know, naming the variable", () => {
    assert.match(samplerFromEnvironment({}).toString(), /ParentBased\{root=AlwaysOnSampler/);
    assert.match(samplerFromEnvironment({ OTEL_TRACES_SAMPLER: "parentbased_traceidratio", OTEL_TRACES_SAMPLER_ARG: "0.1" }).toString(), /TraceIdRatioBased\{0\.1\}/);
    assert.match(samplerFromEnvironment({ OTEL_TRACES_SAMPLER: "always_off" }).toString(), /AlwaysOffSampler/);
    assert.throws(() => samplerFromEnvironment({ OTEL_TRACES_SAMPLER: "sometimes" }), /^Error: OTEL_TRACES_SAMPLER: must be/);
    assert.throws(() => samplerFromEnvironment({ OTEL_TRACES_SAMPLER: "traceidratio", OTEL_TRACES_SAMPLER_ARG: "2" }), /^Error: OTEL_TRACES_SAMPLER_ARG: must be a ratio/);
  });

  it("batches as OTEL_BSP_* say, and refuses a value that is not a count, naming the variable", () => {
    assert.deepEqual(batchFromEnvironment({ OTEL_BSP_SCHEDULE_DELAY: "200", OTEL_BSP_MAX_EXPORT_BATCH_SIZE: "64" }), {
      scheduledDelayMillis: 200,
      maxExportBatchSize: 64,
    });
    assert.deepEqual(batchFromEnvironment({}), {});
    assert.throws(() => batchFromEnvironment({ OTEL_BSP_SCHEDULE_DELAY: "soon" }), /^Error: OTEL_BSP_SCHEDULE_DELAY: must be an integer of at least 0, got "soon"$/);
    assert.throws(() => batchFromEnvironment({ OTEL_BSP_MAX_QUEUE_SIZE: "0" }), /OTEL_BSP_MAX_QUEUE_SIZE/);
  });

  it("makes no tracer when the OTEL_* variables ask for none", async () => {
    assert.equal(tracingFromEnvironment({}, "catalog"), undefined);
    assert.equal(tracingFromEnvironment({ OTEL_EXPORTER_OTLP_ENDPOINT: "http://127.0.0.1:4318", OTEL_SDK_DISABLED: "true" }, "catalog"), undefined);
    assert.equal(tracingFromEnvironment({ OTEL_EXPORTER_OTLP_ENDPOINT: "http://127.0.0.1:4318", OTEL_TRACES_EXPORTER: "none" }, "catalog"), undefined);
    const tracing = tracingFromEnvironment({ OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: "http://127.0.0.1:4318/v1/traces" }, "catalog");
    assert.ok(tracing);
    await tracing.shutdown();
  });
});

describe("tracing: the reference programs, configured by OTEL_* alone", function () {
  this.timeout(30_000);

  it("exports one PlaceOrder's trace from the orders and catalog processes: caller → orders → catalog, flushed on SIGTERM", async () => {
    const receiver = await otlpReceiver();
    const [catalogPort, ordersPort] = await freePorts(2);
    const children: ChildProcess[] = [];
    const start = (service: string, env: Record<string, string>) => {
      const child = spawn(process.execPath, [path.join(repoRoot(), "dist", "services", service, "main.js")], {
        env: { ...process.env, PROTOMESH_CONTROL_PLANE: "", PROTOMESH_LOG_LEVEL: "warn", OTEL_EXPORTER_OTLP_ENDPOINT: receiver.url, ...env },
        stdio: ["ignore", "ignore", "inherit"],
      });
      children.push(child);
      return child;
    };
    const { logger } = captureLog("warn");
    const callerTracing = tracingFromEnvironment({ OTEL_EXPORTER_OTLP_ENDPOINT: receiver.url, OTEL_SERVICE_NAME: "caller" }, "test")!;
    const client = createClient(OrderServiceClient, `127.0.0.1:${ordersPort}`, { logger, tracer: callerTracing.tracer });
    try {
      start("catalog", { PORT: String(catalogPort) });
      start("orders", { PORT: String(ordersPort), CATALOG_TARGET: `127.0.0.1:${catalogPort}`, ORDERS_STORE_URL: "sqlite::memory:" });
      await waitForServing(`127.0.0.1:${catalogPort}`, 15_000);
      await waitForServing(`127.0.0.1:${ordersPort}`, 15_000);
      await new Promise<void>((resolve, reject) =>
        client.placeOrder(
          { customerId: "cust-trace", idempotencyKey: "trace-1", items: [{ productId: "sku-1001", quantity: 1 }] },
          (error) => (error ? reject(error) : resolve()),
        ),
      );
      await callerTracing.shutdown();
      // SIGTERM: each program drains, then flushes its spans before it exits.
      await Promise.all(children.map((child) => new Promise((resolve) => child.once("exit", resolve) && child.kill("SIGTERM"))));
      const { SERVER, CLIENT } = SPAN_KIND;
      const named = (service: string, name: string, kind: number) =>
        receiver.spans.find((span) => span.service === service && span.name === name && span.kind === kind);
      await waitFor("the caller's, orders' and the catalog's spans", () => named("catalog", "shop.catalog.v1.CatalogService/GetProduct", SERVER) !== undefined);
      const chain = [
        named("caller", "shop.orders.v1.OrderService/PlaceOrder", CLIENT),
        named("orders", "shop.orders.v1.OrderService/PlaceOrder", SERVER),
        named("orders", "shop.catalog.v1.CatalogService/GetProduct", CLIENT),
        named("catalog", "shop.catalog.v1.CatalogService/GetProduct", SERVER),
      ];
      assert.ok(chain.every((span) => span !== undefined), `spans: ${receiver.spans.map((span) => `${span.service} ${span.name} ${span.kind}`).join("; ")}`);
      assert.equal(new Set(chain.map((span) => span!.traceId)).size, 1, "one trace");
      for (let i = 1; i < chain.length; i += 1) assert.equal(chain[i]!.parentSpanId, chain[i - 1]!.spanId);
    } finally {
      client.close();
      for (const child of children) if (child.exitCode === null) child.kill("SIGKILL");
      await receiver.close();
    }
  });
});

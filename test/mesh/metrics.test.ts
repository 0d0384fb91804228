import assert from "node:assert/strict";
import * as fs from "node:fs";
import { spawn } from "node:child_process";
import { Metadata, status } from "@grpc/grpc-js";
import type { ServiceError } from "@grpc/grpc-js";
import { Registry } from "prom-client";
import { CatalogServiceClient, CatalogServiceService } from "../../generated/ts/shop/catalog/v1/catalog";
import type { CatalogServiceServer, SearchProductsResponse } from "../../generated/ts/shop/catalog/v1/catalog";
import { MeshError, createClient, createServer } from "../../mesh";
import type { MeshServer } from "../../mesh";
import { ControlPlane } from "../../mesh/controlplane/control-plane";
import { CLUSTER_LOAD_ASSIGNMENT_TYPE_URL } from "../../mesh/controlplane/xds-protos";
import { catalogService } from "../../services/catalog/catalog-service";
import { delayedCatalog } from "../support/delayed-catalog";
import { catalogEndpoint } from "../support/endpoints";
import { captureLog } from "../support/log-capture";
import { sample, scrape } from "../support/metrics";
import { isCi } from "../support/tools";
import { waitFor } from "../support/wait";
import { AdsStream } from "./controlplane/ads-stream";

/**
 * Prometheus metrics (mesh/metrics.ts) on the admin port (mesh/admin.ts): real calls through a
 * real kit server and client, scraped over HTTP as Prometheus does, the exposition checked by
 * Prometheus' own promtool (Debian's prometheus package, `make promtool`).
 */

const PROMTOOL = "/usr/bin/promtool";
const CATALOG = "shop.catalog.v1.CatalogService";

/** promtool check metrics over `text` (stdin): its exit code and what it printed. */
function promtoolCheck(text: string): Promise<{ code: number; output: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(PROMTOOL, ["check", "metrics"], { stdio: ["pipe", "pipe", "pipe"] });
    let output = "";
    child.stdout.on("data", (chunk: Buffer) => (output += chunk.toString()));
    child.stderr.on("data", (chunk: Buffer) => (output += chunk.toString()));
    child.on("error", reject);
    child.on("close", (code) => resolve({ code: code ?? -1, output }));
    child.stdin.end(text);
  });
}

describe("metrics: go-grpc-prometheus names on the admin port", function () {
  this.timeout(20_000);
  let registry: Registry;
  let server: MeshServer;
  let client: CatalogServiceClient;
  let adminPort: number;

  beforeEach(async () => {
    registry = new Registry();
    const { logger } = captureLog("warn");
    server = createServer({ name: "catalog", logger, metrics: registry, adminAddress: "127.0.0.1:0" });
    server.addService(CatalogServiceService, catalogService());
    const port = await server.listen("127.0.0.1:0");
    adminPort = server.adminPort!;
    client = createClient(CatalogServiceClient, `127.0.0.1:${port}`, { logger, metrics: registry });
  });
  afterEach(async () => {
    client.close();
    await server.drain(0);
  });

  const getProduct = (productId: string) =>
    new Promise<ServiceError | null>((resolve) => client.getProduct({ id: productId }, (error) => resolve(error)));
  const search = (query: string) =>
    new Promise<number>((resolve, reject) => {
      const responses: SearchProductsResponse[] = [];
      const call = client.searchProducts({ query, limit: 0 }, new Metadata());
      call.on("data", (response: SearchProductsResponse) => responses.push(response));
      call.on("error", reject);
      call.on("end", () => resolve(responses.length));
    });

  it("counts each side's calls by method, type and code, their messages and handling time", async () => {
    for (const id of ["sku-1001", "sku-1002", "sku-1003"]) assert.equal(await getProduct(id), null);
    assert.equal((await getProduct("sku-none"))?.code, status.NOT_FOUND);
    const found = await search("coffee");
    assert.ok(found >= 2, "the search streams several products");

    const { code, type, body } = await scrape(adminPort);
    assert.equal(code, 200);
    assert.match(type, /^text\/plain; version=0\.0\.4/);
    for (const side of ["server", "client"]) {
      const unary = { grpc_type: "unary", grpc_service: CATALOG, grpc_method: "GetProduct" };
      assert.equal(sample(body, `grpc_${side}_started_total`, unary), 4, `${side} started`);
      assert.equal(sample(body, `grpc_${side}_handled_total`, { ...unary, grpc_code: "OK" }), 3, `${side} OK`);
      assert.equal(sample(body, `grpc_${side}_handled_total`, { ...unary, grpc_code: "NotFound" }), 1, `${side} NotFound`);
      assert.equal(sample(body, `grpc_${side}_handling_seconds_count`, unary), 4);
      assert.equal(sample(body, `grpc_${side}_handling_seconds_bucket`, { ...unary, le: "+Inf" }), 4);
      assert.equal(sample(body, `grpc_${side}_handling_seconds_bucket`, { ...unary, le: "10" }), 4, "go-grpc-prometheus' buckets, up to 10 s");
      const stream = { grpc_type: "server_stream", grpc_service: CATALOG, grpc_method: "SearchProducts" };
      assert.equal(sample(body, `grpc_${side}_handled_total`, { ...stream, grpc_code: "OK" }), 1);
      const [requests, responses] = side === "server" ? ["received", "sent"] : ["sent", "received"];
      assert.equal(sample(body, `grpc_${side}_msg_${requests}_total`, stream), 1, `${side}: one request`);
      assert.equal(sample(body, `grpc_${side}_msg_${responses}_total`, stream), found, `${side}: every streamed response`);
      assert.equal(sample(body, `grpc_${side}_msg_${responses}_total`, unary), 3, `${side}: a response for each OK call`);
    }
    assert.equal(sample(body, "protomesh_server_inflight_calls", { server: "catalog" }), 0);
    assert.ok(sample(body, "protomesh_server_concurrency_limit", { server: "catalog" })! > 0);
    assert.ok(sample(body, "nodejs_eventloop_lag_p99_seconds") !== undefined, "Node's event-loop delay");
  });

  it("passes promtool check metrics", async function () {
    if (!fs.existsSync(PROMTOOL)) {
      const reason = `promtool is not installed at ${PROMTOOL}: run \`make promtool\` (Debian's prometheus package)`;
      if (isCi()) throw new Error(`${reason} (CI=true: a missing tool fails the run)`);
      process.stderr.write(`skipping "${this.test?.fullTitle()}": ${reason}\n`);
      this.skip();
    }
    await getProduct("sku-1001");
    await getProduct("sku-none");
    await search("tea");
    const { body } = await scrape(adminPort);
    const { code, output } = await promtoolCheck(body);
    assert.equal(code, 0, `promtool: ${output}`);
    assert.equal(output.trim(), "", "no lint findings");
  });

  it("answers a path other than /metrics 404 and a POST 405", async () => {
    assert.equal((await scrape(adminPort, "/")).code, 404);
    assert.equal((await scrape(adminPort, "/metrics", "POST")).code, 405);
    assert.equal((await scrape(adminPort, "/metrics", "HEAD")).code, 200);
  });
});

describe("metrics: shed calls and the control plane's own", function () {
  this.timeout(20_000);

  it("counts calls the load shedder refused, per method", async () => {
    const registry = new Registry();
    const { logger } = captureLog("error");
    const server = createServer({ name: "catalog", logger, metrics: registry, loadShedding: { maxConcurrentCalls: 1, adaptive: false } });
    server.addService(CatalogServiceService, delayedCatalog(300));
    const port = await server.listen("127.0.0.1:0");
    const client = createClient(CatalogServiceClient, `127.0.0.1:${port}`, { logger });
    try {
      const call = () => new Promise<number>((resolve) => client.getProduct({ id: "sku-1001" }, (error) => resolve(error?.code ?? status.OK)));
      const codes = await Promise.all([call(), call(), call()]);
      const shed = codes.filter((code) => code === status.RESOURCE_EXHAUSTED).length;
      assert.ok(shed >= 1, `some calls shed: ${codes.join(",")}`);
      const text = await registry.metrics();
      assert.equal(sample(text, "protomesh_server_shed_total", { grpc_service: CATALOG, grpc_method: "GetProduct" }), shed);
      assert.equal(sample(text, "grpc_server_handled_total", { grpc_method: "GetProduct", grpc_code: "ResourceExhausted" }), shed);
    } finally {
      client.close();
      await server.drain(0);
    }
  });

  it("counts the control plane's endpoints per state, its ADS streams and the responses it sent", async () => {
    const registry = new Registry();
    const controlPlane = new ControlPlane({ logger: captureLog("warn").logger, warmupMs: 0, metrics: registry, adminAddress: "127.0.0.1:0" });
    const address = `127.0.0.1:${await controlPlane.listen("127.0.0.1:0")}`;
    const stream = new AdsStream(address, "metrics");
    try {
      controlPlane.registry.register(catalogEndpoint({ port: 1 })); // nothing listens: probed UNHEALTHY
      await waitFor("the endpoint to be probed", () => controlPlane.registry.entries("catalog")[0]?.healthDetail !== "not probed yet");
      stream.subscribe(CLUSTER_LOAD_ASSIGNMENT_TYPE_URL, ["catalog"]);
      await stream.next();
      const { body } = await scrape(controlPlane.server.adminPort!);
      assert.equal(sample(body, "protomesh_controlplane_endpoints", { service: "catalog", state: "UNHEALTHY" }), 1);
      assert.equal(sample(body, "protomesh_xds_streams"), 1);
      assert.ok(sample(body, "protomesh_xds_responses_total", { type: "ClusterLoadAssignment" })! >= 1);
      assert.ok(sample(body, "grpc_server_started_total", { grpc_service: "envoy.service.discovery.v3.AggregatedDiscoveryService" })! >= 1);
    } finally {
      stream.close();
      await controlPlane.stop();
    }
  });
});

describe("metrics: a client's picks per endpoint and policy, and its retried attempts", function () {
  this.timeout(20_000);
  const servers: MeshServer[] = [];
  const clients: CatalogServiceClient[] = [];
  afterEach(async () => {
    for (const client of clients.splice(0)) client.close();
    for (const server of servers.splice(0)) await server.drain(0);
  });

  /** A catalog server whose GetProduct fails UNAVAILABLE for the first `failures` calls, with its own registry. */
  async function catalog(failures = 0): Promise<{ address: string; registry: Registry }> {
    const registry = new Registry();
    let failed = 0;
    const server = createServer({ name: "catalog", logger: captureLog("error").logger, metrics: registry });
    const service = catalogService();
    const handlers: CatalogServiceServer = {
      ...service,
      getProduct: (call, callback) => {
        if (failed < failures) {
          failed += 1;
          callback(new MeshError(status.UNAVAILABLE, "failing on purpose"));
        } else service.getProduct(call, callback);
      },
    };
    server.addService(CatalogServiceService, handlers);
    servers.push(server);
    return { address: `127.0.0.1:${await server.listen("127.0.0.1:0")}`, registry };
  }

  const getProduct = (client: CatalogServiceClient) =>
    new Promise<number>((resolve) => client.getProduct({ id: "sku-1001" }, (error) => resolve(error?.code ?? status.OK)));

  it("counts p2c_ewma's picks onto each endpoint: as many as each server handled", async () => {
    const replicas = [await catalog(), await catalog()];
    const registry = new Registry();
    const target = `ipv4:${replicas.map((replica) => replica.address).join(",")}`;
    const client = createClient(CatalogServiceClient, target, {
      logger: captureLog("warn").logger,
      metrics: registry,
      serviceConfig: { loadBalancingConfig: [{ p2c_ewma: {} }] },
    });
    clients.push(client);
    const CALLS = 60;
    for (let i = 0; i < CALLS; i += 1) assert.equal(await getProduct(client), status.OK);
    const text = await registry.metrics();
    let picked = 0;
    for (const replica of replicas) {
      const picks = sample(text, "protomesh_client_picks_total", { service: target, policy: "p2c_ewma", endpoint: replica.address }) ?? 0;
      const handled = sample(await replica.registry.metrics(), "grpc_server_handled_total", { grpc_method: "GetProduct", grpc_code: "OK" }) ?? 0;
      assert.equal(picks, handled, `${replica.address}: picks = calls it handled`);
      picked += picks;
    }
    assert.equal(picked, CALLS, "every call picked once");
  });

  it("counts the attempts grpc-js retried, from a retried call's headers and from a failed call's status", async () => {
    const failing = await catalog(4);
    const registry = new Registry();
    const client = createClient(CatalogServiceClient, failing.address, {
      logger: captureLog("error").logger,
      metrics: registry,
      serviceConfig: {
        methodConfig: [
          {
            name: [{ service: CATALOG }],
            retryPolicy: { maxAttempts: 3, initialBackoff: "0.01s", maxBackoff: "0.01s", backoffMultiplier: 1, retryableStatusCodes: ["UNAVAILABLE"] },
          },
        ],
      },
    });
    clients.push(client);
    // Failures 1-3: three attempts, all UNAVAILABLE (2 retried). Failure 4, then OK: 1 retried.
    assert.equal(await getProduct(client), status.UNAVAILABLE);
    assert.equal(await getProduct(client), status.OK);
    assert.equal(await getProduct(client), status.OK);
    const text = await registry.metrics();
    const unary = { grpc_type: "unary", grpc_service: CATALOG, grpc_method: "GetProduct" };
    assert.equal(sample(text, "protomesh_client_retries_total", unary), 3);
    assert.equal(sample(text, "grpc_client_started_total", unary), 3, "a call is counted once, however many attempts");
    assert.equal(sample(await failing.registry.metrics(), "grpc_server_started_total", unary), 6, "the server saw every attempt");
  });
});

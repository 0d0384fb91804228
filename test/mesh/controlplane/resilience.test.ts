import assert from "node:assert/strict";
import { setTimeout as sleep } from "node:timers/promises";
import { Metadata, status } from "@grpc/grpc-js";
import type { ServiceError } from "@grpc/grpc-js";
import { CatalogServiceService } from "../../../generated/ts/shop/catalog/v1/catalog";
import type { GetProductRequest, GetProductResponse, ListProductsResponse } from "../../../generated/ts/shop/catalog/v1/catalog";
import { parseMeshConfig, policyFor } from "../../../mesh/controlplane/config";
import { clusterResource, routeConfigurationResource } from "../../../mesh/controlplane/resources";
import { MeshError } from "../../../mesh/errors";
import { unary } from "../../../mesh/handler";
import { createServer } from "../../../mesh/server";
import { catalogService } from "../../../services/catalog/catalog-service";
import { waitFor } from "../../support/wait";
import { sample } from "../../support/metrics";
import { Registry } from "prom-client";
import { getProduct, MeshFixture } from "./mesh-fixture";
import type { Replica } from "./mesh-fixture";

/** Registers a catalog replica whose GetProduct runs `handler`, counting calls. */
async function startReplicaWith(mesh: MeshFixture, handler: () => Promise<GetProductResponse>): Promise<Replica> {
  const replica = { calls: 0 } as Replica;
  replica.server = createServer({ name: "catalog", logger: mesh.log.logger, controlPlane: mesh.address, leaseTtlMs: 1_500, loadShedding: false });
  replica.server.addService(CatalogServiceService, {
    ...catalogService(),
    getProduct: unary<GetProductRequest, GetProductResponse>(() => {
      replica.calls += 1;
      return handler();
    }),
  });
  replica.port = await replica.server.listen("127.0.0.1:0");
  mesh.replicas.push(replica);
  return replica;
}

let started: MeshFixture | undefined;

/** A fixture the suite's afterEach stops. */
async function startMesh(): Promise<MeshFixture> {
  started = new MeshFixture();
  return started;
}

describe("control plane: per-method routes, outlier detection, circuit breaking, keepalive (xDS)", function () {
  this.timeout(20_000);
  afterEach(async () => {
    await started?.stop();
    started = undefined;
  });

  it("routes a method by name to its own timeout and retry, and the rest to the service's", () => {
    const policy = policyFor(
      parseMeshConfig(
        [
          "services:",
          "  catalog:",
          "    timeout_ms: 2000",
          "    idempotent: true",
          "    retry: { retry_on: [unavailable], num_retries: 2 }",
          "    methods:",
          "      GetProduct: { timeout_ms: 150 }",
          "      /shop.catalog.v1.CatalogService/SearchProducts: { idempotent: false }",
          "",
        ].join("\n"),
      ),
      "catalog",
    );
    const routes = (routeConfigurationResource("catalog", policy).virtual_hosts as { routes: Record<string, Record<string, unknown>>[] }[])[0].routes;
    assert.deepEqual(routes.map((route) => route.match), [
      { safe_regex: { google_re2: {}, regex: "^/[^/]+/GetProduct$" } },
      { path: "/shop.catalog.v1.CatalogService/SearchProducts" },
      { prefix: "" },
    ]);
    assert.deepEqual(routes[0].route.max_stream_duration, { max_stream_duration: { seconds: "0", nanos: 150_000_000 } });
    assert.ok(routes[0].route.retry_policy, "GetProduct keeps the service's retry");
    assert.equal(routes[1].route.retry_policy, undefined, "a method marked idempotent: false gets none");
    assert.deepEqual(routes[2].route.max_stream_duration, { max_stream_duration: { seconds: "2", nanos: 0 } });
  });

  it("gives a method its own deadline over xDS, and leaves the others the service's", async () => {
    const mesh = await startMesh();
    await mesh.startControlPlane({
      config: parseMeshConfig("services:\n  catalog:\n    timeout_ms: 3000\n    methods:\n      GetProduct: { timeout_ms: 150 }\n"),
    });
    await startReplicaWith(mesh, () => new Promise(() => undefined));
    await mesh.waitHealthy(1);
    const client = mesh.catalogClient();
    const startedAt = Date.now();
    const error = (await getProduct(client, 10_000).catch((caught: ServiceError) => caught)) as ServiceError;
    assert.equal(error.code, status.DEADLINE_EXCEEDED);
    assert.ok(Date.now() - startedAt < 1_000, `GetProduct ended after ${Date.now() - startedAt} ms (its route: 150 ms)`);
    const listed = await new Promise<ListProductsResponse>((resolve, reject) =>
      client.listProducts({ pageSize: 1, pageToken: "" }, new Metadata(), { deadline: Date.now() + 10_000 }, (failure, response) =>
        failure ? reject(failure) : resolve(response),
      ),
    );
    assert.equal(listed.products.length, 1, "ListProducts is not bound by GetProduct's timeout");
  });

  it("fails calls beyond the circuit breaker's max_requests with UNAVAILABLE at the client", async () => {
    const mesh = await startMesh();
    await mesh.startControlPlane({ config: parseMeshConfig("services:\n  catalog:\n    circuit_breaker: { max_requests: 2 }\n") });
    const replica = await startReplicaWith(mesh, () => new Promise(() => undefined));
    await mesh.waitHealthy(1);
    const client = mesh.catalogClient();
    // grpc-js-xds counts a call from its start (after the pick), so the two are let in first.
    const held = Array.from({ length: 2 }, () => getProduct(client, 1_500).catch((caught: ServiceError) => caught));
    await waitFor("two calls held by the replica", () => replica.calls === 2, 2_000);
    const third = (await getProduct(client, 1_000).catch((caught: ServiceError) => caught)) as ServiceError;
    assert.equal(third.code, status.UNAVAILABLE);
    assert.match(third.details, /dropped by load balancing policy/);
    await Promise.all(held);
    assert.equal(replica.calls, 2, "the third call never reached the replica");
  });

  it("ejects a replica whose calls fail (outlier detection) and readmits it after the ejection time", async () => {
    const mesh = await startMesh();
    await mesh.startControlPlane({
      config: parseMeshConfig(
        "services:\n  catalog:\n    outlier_detection: { interval_ms: 300, base_ejection_time_ms: 1500, failure_percentage: { request_volume: 5 } }\n",
      ),
    });
    let isFailing = true;
    const product = { product: { id: "sku-1001", name: "Widget", priceCents: 100, currency: "EUR", tags: [] } } as unknown as GetProductResponse;
    const sick = await startReplicaWith(mesh, async () => {
      if (isFailing) throw new MeshError(status.INTERNAL, "sick replica");
      return product;
    });
    const healthy = await startReplicaWith(mesh, async () => product);
    await mesh.waitHealthy(2);
    const client = mesh.catalogClient();
    let failures = 0;
    const callFor = async (ms: number) => {
      const until = Date.now() + ms;
      while (Date.now() < until) {
        await getProduct(client).catch(() => (failures += 1));
        await sleep(5);
      }
    };
    await callFor(1_000); // enough failures in an interval to eject the sick replica
    isFailing = false;
    sick.calls = 0;
    await callFor(500);
    assert.equal(sick.calls, 0, "the ejected replica gets no calls");
    assert.ok(healthy.calls > 0);
    await waitFor("the ejected replica is readmitted and serves again", async () => {
      await getProduct(client).catch(() => undefined);
      return sick.calls > 0;
    }, 5_000);
    assert.ok(failures > 0 && failures < 40, `${failures} calls failed before the ejection`);
  });

  it("counts outlier detection's ejection of a replica under least_request (protomesh_client_ejections_total), and none of the healthy one", async () => {
    const mesh = await startMesh();
    await mesh.startControlPlane({
      config: parseMeshConfig(
        "services:\n  catalog:\n    lb_policy: least_request\n    outlier_detection: { interval_ms: 300, base_ejection_time_ms: 60000, failure_percentage: { request_volume: 5 } }\n",
      ),
    });
    const product = { product: { id: "sku-1001", name: "Widget", priceCents: 100, currency: "EUR", tags: [] } } as unknown as GetProductResponse;
    const sick = await startReplicaWith(mesh, async () => {
      throw new MeshError(status.INTERNAL, "sick replica");
    });
    const healthy = await startReplicaWith(mesh, async () => product);
    await mesh.waitHealthy(2);
    const registry = new Registry();
    const client = mesh.catalogClient({ metrics: registry });
    const ejections = async (replica: Replica) =>
      sample(await registry.metrics(), "protomesh_client_ejections_total", { service: "catalog", policy: "least_request", endpoint: `127.0.0.1:${replica.port}` }) ?? 0;
    await waitFor("the sick replica's ejection, counted", async () => {
      await getProduct(client).catch(() => undefined);
      return (await ejections(sick)) === 1;
    }, 10_000, 5);
    sick.calls = 0;
    for (let i = 0; i < 20; i += 1) await getProduct(client);
    assert.equal(sick.calls, 0, "the ejected replica gets no calls");
    assert.equal(await ejections(healthy), 0, "the healthy replica was never ejected");
    assert.equal(await ejections(sick), 1, "one ejection");
  });

  it("sends outlier detection with protomesh's small-mesh defaults, and keepalive with the service's policy", () => {
    const cluster = clusterResource("catalog", policyFor(parseMeshConfig("services:\n  catalog:\n    keepalive: { time_ms: 1000, timeout_ms: 500 }\n"), "catalog"));
    const detection = cluster.outlier_detection as Record<string, unknown>;
    assert.deepEqual(detection.failure_percentage_minimum_hosts, { value: 2 });
    assert.deepEqual(detection.enforcing_failure_percentage, { value: 100 });
    assert.deepEqual(detection.enforcing_success_rate, { value: 0 }, "success-rate ejection, which needs many hosts, is off");
    assert.deepEqual(cluster.circuit_breakers, { thresholds: [{ priority: "DEFAULT", max_requests: { value: 1024 } }] });
    const policies = JSON.stringify(cluster.load_balancing_policy);
    assert.match(policies, /type\.googleapis\.com\/protomesh\.keepalive/);
    assert.match(policies, /"time".*"stringValue":"1s".*"timeout".*"stringValue":"0\.5s"/);
    assert.equal(clusterResource("catalog", policyFor(parseMeshConfig("services:\n  catalog:\n    outlier_detection: false\n"), "catalog")).outlier_detection, undefined);
  });
});

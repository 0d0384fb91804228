import assert from "node:assert/strict";
import { setTimeout as sleep } from "node:timers/promises";
import { status } from "@grpc/grpc-js";
import { HealthCheckResponse_ServingStatus as Serving, HealthClient } from "../../generated/ts/health/v1/health";
import { CatalogServiceClient, CatalogServiceService } from "../../generated/ts/shop/catalog/v1/catalog";
import type { GetProductRequest, GetProductResponse } from "../../generated/ts/shop/catalog/v1/catalog";
import { createClient } from "../../mesh/client";
import { parseMeshConfig, policyFor } from "../../mesh/controlplane/config";
import { serviceConfigFor } from "../../mesh/controlplane/service-config";
import { unary } from "../../mesh/handler";
import { DEFAULT_ADAPTIVE_LIMIT } from "../../mesh/load-shedder";
import type { LoadSheddingOptions } from "../../mesh/load-shedder";
import { createServer } from "../../mesh/server";
import type { MeshServer } from "../../mesh/server";
import { catalogService } from "../../services/catalog/catalog-service";
import { callUnary, gate } from "../support/calls";
import { captureLog } from "../support/log-capture";
import type { CapturedLog } from "../support/log-capture";
import { waitFor } from "../support/wait";

/** A catalog whose GetProduct runs `handler`, counting the calls that reached it. */
async function catalogWith(
  log: CapturedLog,
  loadShedding: LoadSheddingOptions,
  handler: () => Promise<void>,
): Promise<{ server: MeshServer; address: string; served: () => number }> {
  let served = 0;
  const server = createServer({ name: "catalog", logger: log.logger, loadShedding });
  server.addService(CatalogServiceService, {
    ...catalogService(),
    getProduct: unary<GetProductRequest, GetProductResponse>(async () => {
      served += 1;
      await handler();
      return { product: { id: "sku-1001", name: "Widget", priceCents: 100, currency: "EUR", tags: [] } as never };
    }),
  });
  const address = `127.0.0.1:${await server.listen()}`;
  return { server, address, served: () => served };
}

describe("load shedding", () => {
  let log: CapturedLog;
  const servers: MeshServer[] = [];
  const clients: { close(): void }[] = [];

  beforeEach(() => {
    log = captureLog("warn");
  });

  afterEach(async () => {
    for (const client of clients.splice(0)) client.close();
    await Promise.all(servers.splice(0).map((server) => server.drain(200)));
  });

  it("refuses calls beyond maxConcurrentCalls with RESOURCE_EXHAUSTED and retry pushback, before the handler, and never sheds health", async () => {
    const release = gate();
    const catalog = await catalogWith(log, { maxConcurrentCalls: 2, adaptive: false }, () => release.opened);
    servers.push(catalog.server);
    const client = createClient(CatalogServiceClient, catalog.address, { logger: log.logger });
    const health = createClient(HealthClient, catalog.address, { logger: log.logger });
    clients.push(client, health);
    const held = [callUnary(client.getProduct, client, { id: "sku-1001" }), callUnary(client.getProduct, client, { id: "sku-1001" })];
    await waitFor("two calls in the handler", () => catalog.served() === 2, 2_000);

    const shed = await callUnary(client.getProduct, client, { id: "sku-1001" });
    assert.equal(shed.error?.code, status.RESOURCE_EXHAUSTED);
    assert.match(shed.error?.details ?? "", /server overloaded: 2 calls in flight, limit 2/);
    assert.deepEqual(shed.error?.metadata.get("grpc-retry-pushback-ms"), ["25"]);
    assert.equal(catalog.served(), 2, "the shed call never reached the handler");
    const checked = await callUnary(health.check, health, { service: "" });
    assert.equal(checked.response?.status, Serving.SERVING, "health is answered while the server sheds");
    assert.equal(catalog.server.shedder?.shed, 1);

    release.open();
    for (const outcome of await Promise.all(held)) assert.equal(outcome.error, undefined);
    const after = await callUnary(client.getProduct, client, { id: "sku-1001" });
    assert.equal(after.error, undefined, "room again once calls end");
    assert.ok(log.lines.some((line) => line.code === "RESOURCE_EXHAUSTED" && line.msg === "call failed"), "the shed call is logged");
  });

  it("lowers its adaptive limit when the event loop falls behind, and sheds the excess", async function () {
    this.timeout(15_000);
    // Each call blocks the event loop for 15 ms: 40 at once put the loop hundreds of ms behind.
    const catalog = await catalogWith(log, { adaptive: { targetDelayMs: 50, minLimit: 4 } }, async () => {
      await sleep(5);
      const until = performance.now() + 15;
      while (performance.now() < until) {
        // busy: the saturation a CPU-bound handler causes
      }
    });
    servers.push(catalog.server);
    const client = createClient(CatalogServiceClient, catalog.address, { logger: log.logger, defaultDeadlineMs: 10_000 });
    clients.push(client);
    assert.equal(catalog.server.shedder?.limit, DEFAULT_ADAPTIVE_LIMIT.maxLimit, "a fresh server sheds nothing");
    let lowest = Infinity;
    const codes = new Map<string, number>();
    const startedAt = Date.now();
    const worker = async () => {
      while (Date.now() - startedAt < 3_000) {
        const outcome = await callUnary(client.getProduct, client, { id: "sku-1001" });
        const code = status[outcome.error?.code ?? status.OK];
        codes.set(code, (codes.get(code) ?? 0) + 1);
        lowest = Math.min(lowest, catalog.server.shedder!.limit);
      }
    };
    await Promise.all(Array.from({ length: 40 }, worker));
    assert.ok(lowest < 40, `the limit went down to ${lowest}, below the 40 calls offered`);
    assert.ok((codes.get("RESOURCE_EXHAUSTED") ?? 0) > 0, `some calls were shed: ${JSON.stringify([...codes])}`);
    assert.ok((codes.get("OK") ?? 0) > 0, "the rest were served");
    assert.deepEqual([...codes.keys()].filter((code) => code !== "OK" && code !== "RESOURCE_EXHAUSTED"), [], "no other failure");
  });

  it("sheds to a peer: a p2c_ewma client retrying RESOURCE_EXHAUSTED (mesh config, as service config) sees no failure", async () => {
    // As fast as its peer, but with room for 2 calls at a time.
    const overloaded = await catalogWith(log, { maxConcurrentCalls: 2, adaptive: false }, async () => sleep(20));
    const peer = await catalogWith(log, { adaptive: false }, async () => sleep(20));
    servers.push(overloaded.server, peer.server);
    const config = parseMeshConfig(
      "services:\n  catalog:\n    lb_policy: p2c_ewma\n    idempotent: true\n    retry: { retry_on: [unavailable, resource-exhausted], num_retries: 2 }\n",
    );
    const serviceConfig = serviceConfigFor(policyFor(config, "catalog"), ["shop.catalog.v1.CatalogService"]);
    const client = createClient(CatalogServiceClient, `ipv4:${overloaded.address},${peer.address}`, {
      logger: log.logger,
      // p2c_ewma counts a shed call as a server fault (error_penalty), so retries and new calls go to the peer.
      serviceConfig,
    });
    clients.push(client);
    // Until both replicas are connected and in the rotation.
    await waitFor("both replicas serve", async () => {
      await callUnary(client.getProduct, client, { id: "sku-1001" });
      return overloaded.served() > 0 && peer.served() > 0;
    }, 5_000);
    const servedBefore = { overloaded: overloaded.served(), peer: peer.served() };
    const outcomes = await Promise.all(Array.from({ length: 30 }, () => callUnary(client.getProduct, client, { id: "sku-1001" })));
    const failed = outcomes.filter((outcome) => outcome.error !== undefined);
    assert.deepEqual(failed.map((outcome) => outcome.error?.details), []);
    assert.ok(overloaded.server.shedder!.shed > 0, `the overloaded replica shed (served ${overloaded.served() - servedBefore.overloaded}, peer ${peer.served() - servedBefore.peer}, before ${JSON.stringify(servedBefore)})`);
    assert.ok(peer.served() - servedBefore.peer > overloaded.served() - servedBefore.overloaded, "the peer absorbed most of the load");
  });
});

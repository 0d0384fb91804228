import assert from "node:assert/strict";
import { status } from "@grpc/grpc-js";
import { CatalogServiceService } from "../../generated/ts/shop/catalog/v1/catalog";
import { HealthCheckResponse_ServingStatus as Serving, HealthClient } from "../../generated/ts/health/v1/health";
import type { HealthCheckResponse } from "../../generated/ts/health/v1/health";
import { createClient } from "../../mesh/client";
import { createServer } from "../../mesh/server";
import type { MeshServer } from "../../mesh/server";
import { catalogService } from "../../services/catalog/catalog-service";
import { callUnary } from "../support/calls";
import { captureLog } from "../support/log-capture";

const CATALOG = "shop.catalog.v1.CatalogService";

/** Reads Watch messages one at a time. */
function watcher(client: HealthClient, service: string) {
  const stream = client.watch({ service }, { deadline: Date.now() + 20_000 });
  const queue: HealthCheckResponse[] = [];
  const waiting: ((message: HealthCheckResponse) => void)[] = [];
  stream.on("data", (message: HealthCheckResponse) => {
    const next = waiting.shift();
    if (next) next(message);
    else queue.push(message);
  });
  stream.on("error", () => undefined);
  return {
    stream,
    next(): Promise<HealthCheckResponse> {
      const queued = queue.shift();
      if (queued) return Promise.resolve(queued);
      return new Promise((resolve) => waiting.push(resolve));
    },
  };
}

describe("server health (grpc.health.v1)", () => {
  let server: MeshServer;
  let client: HealthClient;

  beforeEach(async () => {
    const { logger } = captureLog();
    server = createServer({ name: "catalog", logger });
    server.addService(CatalogServiceService, catalogService());
    const port = await server.listen();
    client = createClient(HealthClient, `127.0.0.1:${port}`, { logger });
  });

  afterEach(async () => {
    client.close();
    await server.drain(1_000);
  });

  it("reports SERVING for the whole server and for each hosted service once listening", async () => {
    for (const service of ["", CATALOG]) {
      const { response, error } = await callUnary(client.check, client, { service });
      assert.equal(error, undefined);
      assert.equal(response?.status, Serving.SERVING, `status of "${service}"`);
    }
  });

  it("answers Check for an unknown service with NOT_FOUND", async () => {
    const { error } = await callUnary(client.check, client, { service: "no.such.Service" });
    assert.equal(error?.code, status.NOT_FOUND);
  });

  it("answers Watch for an unknown service with SERVICE_UNKNOWN and keeps the stream open", async () => {
    const watch = watcher(client, "no.such.Service");
    assert.equal((await watch.next()).status, Serving.SERVICE_UNKNOWN);
    server.health.setServing(true, "no.such.Service");
    assert.equal((await watch.next()).status, Serving.SERVING);
    watch.stream.cancel();
  });

  it("streams every change of a service's status to Watch", async () => {
    const watch = watcher(client, CATALOG);
    assert.equal((await watch.next()).status, Serving.SERVING);
    server.health.setServing(false);
    assert.equal((await watch.next()).status, Serving.NOT_SERVING);
    const { response } = await callUnary(client.check, client, { service: "" });
    assert.equal(response?.status, Serving.NOT_SERVING);
    server.health.setServing(true);
    assert.equal((await watch.next()).status, Serving.SERVING);
    watch.stream.cancel();
  });

  it("lists every tracked service with List", async () => {
    const { response } = await callUnary(client.list, client, {});
    assert.deepEqual(Object.keys(response?.statuses ?? {}).sort(), ["", CATALOG]);
  });
});

import assert from "node:assert/strict";
import { status } from "@grpc/grpc-js";
import { CatalogServiceService } from "../../../generated/ts/shop/catalog/v1/catalog";
import type { GetProductRequest, GetProductResponse } from "../../../generated/ts/shop/catalog/v1/catalog";
import { parseMeshConfig } from "../../../mesh/controlplane/config";
import { MeshError } from "../../../mesh/errors";
import { unary } from "../../../mesh/handler";
import { createServer } from "../../../mesh/server";
import { catalogService } from "../../../services/catalog/catalog-service";
import { getProduct, MeshFixture } from "./mesh-fixture";
import type { Replica } from "./mesh-fixture";

/** Registers a catalog replica whose GetProduct always fails with UNAVAILABLE, counting calls. */
async function startFailingReplica(mesh: MeshFixture): Promise<Replica> {
  const replica = { calls: 0 } as Replica;
  replica.server = createServer({ name: "catalog", logger: mesh.log.logger, controlPlane: mesh.address, leaseTtlMs: 1_500 });
  replica.server.addService(CatalogServiceService, {
    ...catalogService(),
    getProduct: unary<GetProductRequest, GetProductResponse>(() => {
      replica.calls += 1;
      throw new MeshError(status.UNAVAILABLE, "injected failure");
    }),
  });
  replica.port = await replica.server.listen("127.0.0.1:0");
  mesh.replicas.push(replica);
  return replica;
}

/** Outcome of `count` GetProduct calls: how many failed. */
async function failures(mesh: MeshFixture, count: number): Promise<number> {
  const client = mesh.catalogClient();
  let failed = 0;
  for (let i = 0; i < count; i += 1) {
    try {
      await getProduct(client);
    } catch {
      failed += 1;
    }
  }
  return failed;
}

describe("control plane: retry policy (xDS route retry_policy, executed by grpc-js)", function () {
  let mesh: MeshFixture;

  afterEach(async () => {
    await mesh.stop();
  });

  it("retries UNAVAILABLE on another replica when the service's policy says so", async () => {
    mesh = new MeshFixture();
    await mesh.startControlPlane({
      config: parseMeshConfig("services:\n  catalog:\n    idempotent: true\n    retry: { retry_on: [unavailable], num_retries: 2, base_interval_ms: 5 }\n"),
    });
    const failing = await startFailingReplica(mesh);
    await mesh.startReplica();
    await mesh.waitHealthy(2);
    assert.equal(await failures(mesh, 40), 0);
    assert.ok(failing.calls > 0, "the failing replica was tried, and its failures retried");
  });

  it("does not retry when the service has no retry policy", async () => {
    mesh = new MeshFixture();
    await mesh.startControlPlane();
    await startFailingReplica(mesh);
    await mesh.startReplica();
    await mesh.waitHealthy(2);
    const failed = await failures(mesh, 40);
    assert.ok(failed >= 10 && failed <= 30, `${failed} of 40 failed; round_robin sends about half to the failing replica`);
  });
});

import assert from "node:assert/strict";
import { status } from "@grpc/grpc-js";
import type { ServiceError } from "@grpc/grpc-js";
import { HealthState } from "../../../generated/ts/protomesh/registry/v1/registry";
import { waitFor } from "../../support/wait";
import { getProduct, MeshFixture, callUntilAllServed } from "./mesh-fixture";

describe("control plane: calling a service by name", function () {
  let mesh: MeshFixture;

  beforeEach(() => {
    mesh = new MeshFixture();
  });
  afterEach(async () => {
    await mesh.stop();
  });

  it("spreads calls to a service name over every healthy replica, each a fair share", async () => {
    await mesh.startControlPlane();
    for (let i = 0; i < 3; i += 1) await mesh.startReplica();
    await mesh.waitHealthy(3);
    const client = mesh.catalogClient();
    await callUntilAllServed(client, mesh.replicas);
    mesh.resetCounts();
    const CALLS = 300;
    for (let i = 0; i < CALLS; i += 1) await getProduct(client);
    const shares = mesh.replicas.map((replica) => replica.calls);
    assert.equal(shares.reduce((a, b) => a + b, 0), CALLS);
    // round_robin over 3 READY endpoints gives each exactly a third, give or take one.
    for (const share of shares) assert.ok(Math.abs(share - CALLS / 3) <= 2, `shares ${shares.join(", ")}`);
  });

  it("answers UNAVAILABLE naming the service when it has no endpoint at all", async () => {
    await mesh.startControlPlane({ warmupMs: 0 });
    const client = mesh.catalogClient();
    await assert.rejects(getProduct(client), (error: ServiceError) => {
      assert.equal(error.code, status.UNAVAILABLE);
      assert.equal(error.details, "catalog: no healthy endpoint");
      return true;
    });
  });

  it("answers UNAVAILABLE naming the service when every endpoint is NOT_SERVING", async () => {
    await mesh.startControlPlane({ warmupMs: 0 });
    for (let i = 0; i < 2; i += 1) await mesh.startReplica();
    await mesh.waitHealthy(2);
    const client = mesh.catalogClient();
    await callUntilAllServed(client, mesh.replicas);
    for (const replica of mesh.replicas) replica.server.health.setServing(false);
    await waitFor("every endpoint to be UNHEALTHY", () =>
      mesh.endpoints().every((endpoint) => endpoint.health === HealthState.HEALTH_STATE_UNHEALTHY),
    );
    await waitFor(
      "calls to fail as the mesh says",
      () =>
        getProduct(client).then(
          () => false,
          (error: ServiceError) => error.code === status.UNAVAILABLE && error.details === "catalog: no healthy endpoint",
        ),
      2_000,
    );
  });
});

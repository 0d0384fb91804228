import assert from "node:assert/strict";
import { HealthState } from "../../../generated/ts/protomesh/registry/v1/registry";
import { waitFor } from "../../support/wait";
import { callUntilAllServed, getProduct, MeshFixture } from "./mesh-fixture";
import type { Replica } from "./mesh-fixture";
import type { CatalogServiceClient } from "../../../generated/ts/shop/catalog/v1/catalog";

/** How many calls in a row must miss a replica before it counts as out of rotation (round_robin over 3). */
const CALLS_IN_A_ROW = 30;

/** Resolves once CALLS_IN_A_ROW successive calls all missed `replica`. */
async function waitOutOfRotation(client: CatalogServiceClient, replica: Replica, timeoutMs: number): Promise<void> {
  let missed = 0;
  await waitFor(
    "the replica to leave rotation",
    async () => {
      const before = replica.calls;
      await getProduct(client);
      missed = replica.calls === before ? missed + 1 : 0;
      return missed >= CALLS_IN_A_ROW;
    },
    timeoutMs,
    0,
  );
}

describe("control plane: health probing", function () {
  let mesh: MeshFixture;

  beforeEach(async () => {
    mesh = new MeshFixture();
    await mesh.startControlPlane();
    for (let i = 0; i < 3; i += 1) await mesh.startReplica();
    await mesh.waitHealthy(3);
  });
  afterEach(async () => {
    await mesh.stop();
  });

  it("takes a replica that reports NOT_SERVING out of rotation within 1 s, and back when SERVING", async () => {
    const client = mesh.catalogClient();
    await callUntilAllServed(client, mesh.replicas);
    const [sick] = mesh.replicas;
    sick.server.health.setServing(false);
    const startedAt = Date.now();
    await waitOutOfRotation(client, sick, 1_000);
    assert.ok(Date.now() - startedAt <= 1_000);
    const entry = mesh.endpoints().find((e) => e.endpoint?.port === sick.port);
    assert.equal(entry?.health, HealthState.HEALTH_STATE_UNHEALTHY);
    assert.equal(entry?.healthDetail, "NOT_SERVING");

    sick.server.health.setServing(true);
    const before = sick.calls;
    await waitFor(
      "the replica to serve again",
      async () => {
        await getProduct(client);
        return sick.calls > before;
      },
      1_000,
      0,
    );
  });

  it("sends traffic to a new replica within 1 s of its registering", async () => {
    const client = mesh.catalogClient();
    await callUntilAllServed(client, mesh.replicas);
    const fresh = await mesh.startReplica(); // resolves once registered
    const registeredAt = Date.now();
    await waitFor(
      "the new replica to serve a call",
      async () => {
        await getProduct(client);
        return fresh.calls > 0;
      },
      1_000,
      0,
    );
    assert.ok(Date.now() - registeredAt <= 1_000);
  });

  it("takes a replica out when its lease expires, and publishes it UNHEALTHY while its probe fails", async () => {
    const registry = mesh.controlPlane.registry;
    const lease = registry.register(
      { service: "ghost", address: "127.0.0.1", port: 1, zone: "", weight: 1, metadata: {}, healthServiceName: "" },
      400,
    );
    await waitFor("the probe to fail", () =>
      registry.entries("ghost").some((e) => e.health === HealthState.HEALTH_STATE_UNHEALTHY),
    );
    assert.match(registry.entries("ghost")[0].healthDetail, /UNAVAILABLE/);
    await waitFor("the lease to expire", () => registry.entries("ghost").length === 0, 2_000);
    assert.throws(() => registry.keepAlive(lease.leaseId), /NOT_FOUND/);
  });
});

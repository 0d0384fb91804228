import assert from "node:assert/strict";
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
});

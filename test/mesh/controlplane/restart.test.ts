import assert from "node:assert/strict";
import { waitFor } from "../../support/wait";
import { callUntilAllServed, getProduct, MeshFixture } from "./mesh-fixture";

describe("control plane: restarts", function () {
  let mesh: MeshFixture;

  beforeEach(() => {
    mesh = new MeshFixture();
  });
  afterEach(async () => {
    await mesh.stop();
  });

  it("keeps clients serving on the last known endpoints while it is down, and pushes changes once back", async () => {
    this.timeout(20_000);
    await mesh.startControlPlane({ warmupMs: 1_500 });
    const port = mesh.controlPlane.port;
    for (let i = 0; i < 2; i += 1) await mesh.startReplica();
    await mesh.waitHealthy(2);
    const client = mesh.catalogClient();
    await callUntilAllServed(client, mesh.replicas);

    await mesh.controlPlane.stop();
    mesh.resetCounts();
    for (let i = 0; i < 50; i += 1) await getProduct(client); // no control plane: still served
    assert.ok(mesh.replicas.every((replica) => replica.calls > 0), "both known replicas still serve");

    const late = await mesh.startReplica(); // cannot register yet: keeps retrying
    assert.equal(late.calls, 0);
    await mesh.startControlPlane({ warmupMs: 1_500 }, port);
    // The old replicas re-register when their keep-alive gets NOT_FOUND, the late one on its
    // next retry; the client's xDS stream reconnects with backoff (about 1 s, then 1.6 s, ...).
    await waitFor(
      "the replica that joined during the outage to serve",
      async () => {
        await getProduct(client);
        return late.calls > 0;
      },
      12_000,
      20,
    );
    await mesh.waitHealthy(3);
  });
});

import assert from "node:assert/strict";
import * as os from "node:os";
import * as path from "node:path";
import { ChaosMesh, chaosMeshConfig } from "../support/chaos";
import { CliRun } from "../support/cli-run";

describe("protomesh place-orders (a mesh client placing orders, as the README's walkthrough runs it)", function () {
  this.timeout(60_000);
  let mesh: ChaosMesh | undefined;

  after(async () => {
    await mesh?.stop();
  });

  it("places the orders through the mesh by name and reports every call, the retries and no duplicate key", async () => {
    mesh = await ChaosMesh.start({ meshConfig: chaosMeshConfig(3_000, ["catalog", "orders"]) });
    await mesh.addReplica("c0");
    await mesh.addReplica("o0", { service: "orders", env: { ORDERS_STORE_URL: `sqlite:${path.join(mesh.dir, "orders.sqlite")}` } });
    const run = new CliRun(["place-orders", "25"], { PROTOMESH_CONTROL_PLANE: mesh.controlPlane, PROTOMESH_LOG_LEVEL: "warn" }, os.tmpdir());
    const exit = await run.exited;
    assert.deepEqual(exit, { code: 0, signal: null }, run.stderr);
    assert.equal(
      run.stdout,
      [
        "placed 25 orders: OK 25",
        "retried by grpc-js (more than one attempt): 0",
        "orders stored: 25; idempotency keys with more than one order: 0",
        "",
      ].join("\n"),
    );
  });

  it("refuses a count that is not a positive integer, with the usage and exit code 2", async () => {
    const run = new CliRun(["place-orders", "many"], {}, os.tmpdir());
    assert.deepEqual(await run.exited, { code: 2, signal: null });
    assert.match(run.stderr, /count must be an integer from 1 to 100000/);
    assert.match(run.stderr, /Usage: protomesh place-orders \[count\]/);
  });
});

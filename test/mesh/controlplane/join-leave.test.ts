import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import type { ChildProcess } from "node:child_process";
import { once } from "node:events";
import * as path from "node:path";
import { HealthState } from "../../../generated/ts/protomesh/registry/v1/registry";
import { waitFor } from "../../support/wait";
import { callUntilAllServed, getProduct, MeshFixture } from "./mesh-fixture";

/** dist/services/catalog/main.js, from dist/test/mesh/controlplane. */
const CATALOG_MAIN = path.resolve(__dirname, "..", "..", "..", "services", "catalog", "main.js");

describe("control plane: services joining and leaving", function () {
  let mesh: MeshFixture;
  let child: ChildProcess | undefined;

  beforeEach(async () => {
    mesh = new MeshFixture();
    await mesh.startControlPlane();
  });
  afterEach(async () => {
    if (child && child.exitCode === null && child.signalCode === null) {
      child.kill("SIGKILL");
      await once(child, "exit");
    }
    child = undefined;
    await mesh.stop();
  });

  it("stops a replica gracefully under continuous traffic without a single failed call", async () => {
    for (let i = 0; i < 3; i += 1) await mesh.startReplica();
    await mesh.waitHealthy(3);
    const client = mesh.catalogClient();
    await callUntilAllServed(client, mesh.replicas);
    let isRunning = true;
    let failures = 0;
    let succeeded = 0;
    const CONCURRENCY = 4;
    const loops = Array.from({ length: CONCURRENCY }, async () => {
      while (isRunning) {
        try {
          await getProduct(client);
          succeeded += 1;
        } catch {
          failures += 1;
        }
      }
    });
    const [leaving] = mesh.replicas;
    await leaving.server.drain();
    const servedWhileDraining = leaving.calls;
    const after = succeeded;
    await waitFor("100 more calls after the drain", () => succeeded >= after + 100);
    isRunning = false;
    await Promise.all(loops);
    assert.equal(failures, 0);
    assert.equal(leaving.calls, servedWhileDraining, "no call reached the stopped replica");
    assert.equal(mesh.endpoints().length, 2);
  });

  it("takes a replica killed with SIGKILL out of rotation within 1 s (probe), well before its 10 s lease", async () => {
    await mesh.startReplica();
    child = spawn(process.execPath, [CATALOG_MAIN], {
      env: { ...process.env, PORT: "0", PROTOMESH_CONTROL_PLANE: mesh.address, PROTOMESH_LOG_LEVEL: "warn" },
      stdio: ["ignore", "ignore", "inherit"],
    });
    const pid = String(child.pid);
    const childEntry = () => mesh.endpoints().find((e) => e.endpoint?.metadata.pid === pid);
    await waitFor("the child replica to be healthy", () => childEntry()?.health === HealthState.HEALTH_STATE_HEALTHY, 10_000);
    const client = mesh.catalogClient();
    await callUntilAllServed(client, mesh.replicas); // warms the channel; the child serves too

    child.kill("SIGKILL");
    const killedAt = Date.now();
    await once(child, "exit");
    await waitFor("the killed replica to be marked unhealthy", () => childEntry()?.health === HealthState.HEALTH_STATE_UNHEALTHY, 1_000);
    assert.ok(Date.now() - killedAt <= 1_000);
    assert.match(childEntry()!.healthDetail, /UNAVAILABLE|ended/);
    for (let i = 0; i < 30; i += 1) await getProduct(client); // every call lands on the live replica
  });

  it("takes a frozen replica (SIGSTOP) out of rotation within 2 s by its heartbeat, and back after SIGCONT", async () => {
    await mesh.startReplica();
    child = spawn(process.execPath, [CATALOG_MAIN], {
      env: { ...process.env, PORT: "0", PROTOMESH_CONTROL_PLANE: mesh.address, PROTOMESH_LOG_LEVEL: "warn" },
      stdio: ["ignore", "ignore", "inherit"],
    });
    const frozen = child;
    const pid = String(frozen.pid);
    const childEntry = () => mesh.endpoints().find((e) => e.endpoint?.metadata.pid === pid);
    await waitFor("the child replica to be healthy", () => childEntry()?.health === HealthState.HEALTH_STATE_HEALTHY, 10_000);

    frozen.kill("SIGSTOP");
    const frozenAt = Date.now();
    try {
      await waitFor("the frozen replica to be marked unhealthy", () => childEntry()?.health === HealthState.HEALTH_STATE_UNHEALTHY, 2_500);
      assert.ok(Date.now() - frozenAt <= 2_500, `took ${Date.now() - frozenAt} ms`);
      assert.match(childEntry()!.healthDetail, /heartbeat failed: no answer within 1000 ms/);
      const client = mesh.catalogClient();
      for (let i = 0; i < 20; i += 1) await getProduct(client); // none waits on the frozen replica
    } finally {
      frozen.kill("SIGCONT");
    }
    await waitFor("the resumed replica to be healthy again", () => childEntry()?.health === HealthState.HEALTH_STATE_HEALTHY, 3_000);
  });
});

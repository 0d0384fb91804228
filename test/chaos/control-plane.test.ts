import assert from "node:assert/strict";
import { ChaosMesh, chaosMeshConfig } from "../support/chaos";
import { Traffic, describeCalls, failures } from "../support/traffic";
import { waitFor } from "../support/wait";

/** A short lease, so that replicas renew (and find the restarted control plane) every second. */
const LEASE_TTL_MS = 3_000;
const DEADLINE_MS = 1_000;
/** How long the control plane stays dead. */
const DOWN_MS = 3_000;
/**
 * From the new replica's registration to its first served call: the client's ADS stream must have
 * reconnected by then (grpc-js-xds retries with backoff from 1 s) and the push reached it.
 */
const NEW_REPLICA_SERVED_MS = 15_000;

describe("chaos: the control plane is killed mid-traffic and restarted (real catalog processes)", function () {
  this.timeout(90_000);
  let mesh: ChaosMesh;
  let traffic: Traffic | undefined;

  before(async function () {
    mesh = await ChaosMesh.start({ meshConfig: chaosMeshConfig(LEASE_TTL_MS) });
  });

  after(async () => {
    await traffic?.stop();
    await mesh?.stop();
  });

  it(`no call fails while it is down or restarting, and a replica added after the restart gets calls within ${NEW_REPLICA_SERVED_MS / 1000} s`, async () => {
    const r0 = await mesh.addReplica("r0");
    const r1 = await mesh.addReplica("r1");
    traffic = new Traffic(await mesh.client(), { concurrency: 4, deadlineMs: DEADLINE_MS, pauseMs: 10 });
    await traffic.waitCalls(50);

    const killedAt = mesh.killControlPlane();
    await new Promise((resolve) => setTimeout(resolve, DOWN_MS));
    const down = traffic.issuedBetween(killedAt);
    await mesh.startControlPlane();
    await mesh.waitRegistered([r0, r1], 10_000);
    const r2 = await mesh.addReplica("r2");
    const registeredAt = Date.now();
    await waitFor(
      "a call served by the replica added after the restart",
      () => traffic!.issuedBetween(registeredAt).some((call) => call.code === 0 && call.peer === r2.endpoint),
      NEW_REPLICA_SERVED_MS,
    );
    const servedAt = traffic.issuedBetween(registeredAt).find((call) => call.peer === r2.endpoint)!.startedAt;
    await traffic.waitCalls(1);

    const window = traffic.issuedBetween(killedAt - DEADLINE_MS);
    const account = describeCalls(window, (peer) => mesh.replicaOf(peer));
    assert.ok(down.length > 0, "no call was made while the control plane was down");
    assert.deepEqual(failures(window), [], `failed calls from the kill on (bound: 0): ${account}\n${mesh.describe()}`);
    console.log(
      `      control plane down ${DOWN_MS} ms (${down.length} calls then): ${account}; ` +
        `new replica's first call ${servedAt - registeredAt} ms after it was HEALTHY`,
    );
  });
});

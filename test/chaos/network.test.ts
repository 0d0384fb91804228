import assert from "node:assert/strict";
import { HealthState } from "../../generated/ts/protomesh/registry/v1/registry";
import { ChaosMesh, chaosMeshConfig } from "../support/chaos";
import type { Replica } from "../support/chaos";
import { NetworkNamespace, requireNamespaces } from "../support/netns";
import { Traffic, describeCalls, failures } from "../support/traffic";
import type { CallOutcome } from "../support/traffic";
import { waitFor } from "../support/wait";

const DEADLINE_MS = 1_000;
const REPLICA_DELAY_MS = 20;
/** How long each fault lasts. */
const FAULT_MS = 5_000;
/** Loss of the lossy link, each way. */
const LOSS_PERCENT = 30;
/** The bounds the scenarios assert. */
const ROUTED_AROUND_MS = 2_000;
const BACK_IN_ROTATION_MS = 10_000;
/** Calls that may fail while a fault is being detected: those in flight on the link, and a few sent before it is avoided. */
const MAX_FAILED_DURING_DETECTION = 30;
/** The lossy replica's share of the calls once avoided (1/3 before the fault). */
const MAX_LOSSY_SHARE_PERCENT = 10;
/**
 * A lossy link does not take the replica out of rotation: its heartbeat Checks still get through
 * within their second, so the control plane keeps it HEALTHY, and only p2c_ewma avoids it (its
 * calls turned slow). Healed, it gets calls again once its peak-EWMA estimate has decayed below
 * the others' cost: from at most a 1 s sample (the deadline, or error_penalty) with decay_time
 * 10 s, to the ~20 ms of an idle fast replica, that is at most 10 s × ln(1000 / 20) ≈ 39 s after
 * its last call, which came before the heal.
 */
const LOSSY_BACK_IN_ROTATION_MS = 45_000;
/** Deadline of the calls that only keepalive saves from waiting it out on a cut link. */
const LONG_DEADLINE_MS = 8_000;
/** Keepalive's 0.5 s + 1 s, and a retry, with room for 2 busy cores. */
const KEEPALIVE_BOUND_MS = 4_000;

describe("chaos: the link to a catalog replica in its own network namespace breaks (tc on its veth)", function () {
  this.timeout(90_000);
  let namespace: NetworkNamespace | undefined;
  let mesh: ChaosMesh | undefined;
  let traffic: Traffic | undefined;
  let remote: Replica;

  before(async function () {
    requireNamespaces(this);
    this.timeout(60_000);
    namespace = await NetworkNamespace.create();
    // The control plane listens on the host's end of the veth: the namespaced replica registers
    // there, and the control plane probes it (and clients call it) over the veth.
    mesh = await ChaosMesh.start({ meshConfig: chaosMeshConfig(10_000), controlPlaneHost: namespace.hostAddress });
    await mesh.addReplica("r0", { delayMs: REPLICA_DELAY_MS });
    await mesh.addReplica("r1", { delayMs: REPLICA_DELAY_MS });
    remote = await mesh.addReplica("remote", { delayMs: REPLICA_DELAY_MS, namespace });
    traffic = new Traffic(await mesh.client(), { concurrency: 6, deadlineMs: DEADLINE_MS, pauseMs: 5 });
    await servedBy(remote, Date.now());
  });

  after(async () => {
    // Every process first: nothing may still be sending to the namespace's address once it is gone.
    await traffic?.stop();
    await mesh?.stop();
    namespace?.delete();
  });

  async function servedBy(replica: Replica, since: number, timeoutMs = 10_000): Promise<number> {
    await waitFor(`a call served by ${replica.name}`, () => firstServed(replica, since) !== undefined, timeoutMs);
    return firstServed(replica, since)!.startedAt;
  }

  function firstServed(replica: Replica, since: number): CallOutcome | undefined {
    return traffic!.issuedBetween(since).find((call) => call.code === 0 && call.peer === replica.endpoint);
  }

  /** Heals the link and waits until the replica serves again; returns ms from the heal to its first call. */
  async function heal(timeoutMs = BACK_IN_ROTATION_MS): Promise<number> {
    await namespace!.heal();
    const healedAt = Date.now();
    try {
      return (await servedBy(remote, healedAt, timeoutMs)) - healedAt;
    } catch (error) {
      const sinceHeal = traffic!.issuedBetween(healedAt);
      throw new Error(`${(error as Error).message}: ${describeCalls(sinceHeal, (peer) => mesh!.replicaOf(peer))}\n${mesh!.describe()}`, { cause: error });
    }
  }

  it(`partition (every packet dropped): no call sent to it ${ROUTED_AROUND_MS} ms after, at most ${MAX_FAILED_DURING_DETECTION} failures, none past its deadline; healed, it serves within ${BACK_IN_ROTATION_MS / 1000} s`, async () => {
    await namespace!.partition();
    const cutAt = Date.now();
    const unhealthyAt = await mesh!.waitHealth(remote, HealthState.HEALTH_STATE_UNHEALTHY, FAULT_MS, cutAt);
    await new Promise((resolve) => setTimeout(resolve, cutAt + FAULT_MS - Date.now()));
    const healedInMs = await heal();

    const window = traffic!.issuedBetween(cutAt - DEADLINE_MS, cutAt + FAULT_MS);
    const account = describeCalls(window, (peer) => mesh!.replicaOf(peer));
    const late = window.filter((call) => call.startedAt >= cutAt + ROUTED_AROUND_MS && call.peer === remote.endpoint);
    assert.deepEqual(late, [], `calls sent over the cut link ${ROUTED_AROUND_MS} ms or more after it was cut: ${account}`);
    assert.ok(failures(window).length <= MAX_FAILED_DURING_DETECTION, `too many failures: ${account}\n${mesh!.describe()}`);
    const overdue = window.filter((call) => call.endedAt - call.startedAt > DEADLINE_MS + 500);
    assert.deepEqual(overdue, [], `calls that outlived their deadline: ${account}`);
    const lastSent = Math.max(cutAt, ...window.filter((call) => call.peer === remote.endpoint).map((call) => call.startedAt));
    console.log(
      `      partition: ${account}; ${failures(window).length} failed; last call sent over it ${lastSent - cutAt} ms after the cut; ` +
        `UNHEALTHY after ${unhealthyAt - cutAt} ms; healed, served again after ${healedInMs} ms`,
    );
  });

  it(`${LOSS_PERCENT} % loss each way: at most ${MAX_FAILED_DURING_DETECTION} failures, none past its deadline, the lossy replica gets at most ${MAX_LOSSY_SHARE_PERCENT} % of calls after ${ROUTED_AROUND_MS} ms; healed, it serves within ${LOSSY_BACK_IN_ROTATION_MS / 1000} s (p2c_ewma's decay)`, async () => {
    await namespace!.lossy(LOSS_PERCENT);
    const lossyAt = Date.now();
    await new Promise((resolve) => setTimeout(resolve, FAULT_MS));
    const healedInMs = await heal(LOSSY_BACK_IN_ROTATION_MS);

    const window = traffic!.issuedBetween(lossyAt - DEADLINE_MS, lossyAt + FAULT_MS);
    const account = describeCalls(window, (peer) => mesh!.replicaOf(peer));
    assert.ok(failures(window).length <= MAX_FAILED_DURING_DETECTION, `too many failures: ${account}\n${mesh!.describe()}`);
    const overdue = window.filter((call) => call.endedAt - call.startedAt > DEADLINE_MS + 500);
    assert.deepEqual(overdue, [], `calls that outlived their deadline: ${account}`);
    const after = traffic!.issuedBetween(lossyAt + ROUTED_AROUND_MS, lossyAt + FAULT_MS);
    const share = (100 * after.filter((call) => call.peer === remote.endpoint).length) / after.length;
    assert.ok(share <= MAX_LOSSY_SHARE_PERCENT, `the lossy replica got ${share.toFixed(1)} % of the calls: ${account}`);
    const health = mesh!.healthChanges.filter((change) => change.at >= lossyAt && change.endpoint === remote.endpoint);
    console.log(
      `      ${LOSS_PERCENT} % loss: ${account}; ${failures(window).length} failed; its share after ${ROUTED_AROUND_MS} ms ${share.toFixed(2)} %; ` +
        `health changes ${health.map((change) => `${change.at - lossyAt} ms ${change.health === undefined ? "gone" : HealthState[change.health]}`).join(", ") || "none"}; ` +
        `healed, served again after ${healedInMs} ms`,
    );
  });

  it(`partition under calls with a ${LONG_DEADLINE_MS / 1000} s deadline: keepalive (deploy/mesh.yaml: 0.5 s + 1 s) ends the calls stuck on the cut link within ${KEEPALIVE_BOUND_MS / 1000} s and grpc-js retries them elsewhere: 0 failures, none waits for its deadline`, async () => {
    const patient = new Traffic(await mesh!.client(), { concurrency: 6, deadlineMs: LONG_DEADLINE_MS, pauseMs: 5, seed: 7 });
    try {
      await servedBy(remote, Date.now()).catch(() => undefined);
      await waitFor("a patient call served by the remote replica", () => patient.calls.some((call) => call.peer === remote.endpoint), 10_000);
      await namespace!.partition();
      const cutAt = Date.now();
      await new Promise((resolve) => setTimeout(resolve, KEEPALIVE_BOUND_MS + 1_000));
      const window = patient.issuedBetween(cutAt - 500, cutAt + KEEPALIVE_BOUND_MS);
      const account = describeCalls(window, (peer) => mesh!.replicaOf(peer));
      assert.deepEqual(failures(window), [], `failed calls (bound: 0): ${account}`);
      const slowest = Math.max(...window.map((call) => call.endedAt - call.startedAt));
      assert.ok(slowest <= KEEPALIVE_BOUND_MS, `the slowest call took ${slowest} ms (bound ${KEEPALIVE_BOUND_MS} ms; its deadline ${LONG_DEADLINE_MS} ms): ${account}`);
      console.log(`      partition, ${LONG_DEADLINE_MS / 1000} s deadlines: ${account}`);
    } finally {
      await patient.stop();
      await heal();
    }
  });
});

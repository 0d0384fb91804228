import assert from "node:assert/strict";
import { HealthState } from "../../generated/ts/protomesh/registry/v1/registry";
import { ChaosMesh, chaosMeshConfig } from "../support/chaos";
import type { Replica } from "../support/chaos";
import { Traffic, committedToDead, describeCalls, failures } from "../support/traffic";
import { waitFor } from "../support/wait";

/*
 * The chaos suite (test/chaos): a real mesh as processes (test/support/chaos.ts), continuous
 * traffic from an xDS client in this process (test/support/traffic.ts), real signals and real
 * network faults (test/support/netns.ts). Each scenario states its bound in its title.
 *
 * The scenarios of the resilience features (PlaceOrder across an orders SIGKILL, load shedding,
 * outlier ejection, three hops with deadline propagation) are in resilience.test.ts.
 */

/** Deadline of every call: 50× a replica's answer, so only a dead or frozen replica misses it. */
const DEADLINE_MS = 1_000;
/** How late the replicas answer: calls are in flight on a replica when it dies. */
const REPLICA_DELAY_MS = 20;
/** Calls in flight at once: about a third of them on each replica. */
const CONCURRENCY = 6;
/** A call ends by its deadline, give or take the event loops of 2 busy cores. */
const DEADLINE_SLACK_MS = 500;
/** How long traffic is watched after a kill, and how long a replica stays frozen. */
const AFTER_KILL_MS = 3_000;
const FROZEN_MS = 4_000;
/** The bounds the scenarios assert (README "Bounds": the probe's heartbeat is 1 s period, 1 s timeout). */
const ROUTED_AROUND_MS = 2_000;
/** From SIGCONT to a call served by the replica again. */
const THAWED_SERVED_MS = 5_000;
/** From spawning a replica again to its first served call: Node's start on a busy core, registration, probe, push. */
const RESTART_SERVED_MS = 10_000;

describe("chaos: a catalog replica dies or freezes under load (3 replica processes, deploy/mesh.yaml's catalog policy)", function () {
  this.timeout(60_000);
  let mesh: ChaosMesh;
  let traffic: Traffic;
  let replicas: Replica[];

  before(async function () {
    this.timeout(60_000);
    mesh = await ChaosMesh.start({ meshConfig: chaosMeshConfig(10_000) });
    replicas = await Promise.all(["r0", "r1", "r2"].map((name) => mesh.addReplica(name, { delayMs: REPLICA_DELAY_MS })));
    traffic = new Traffic(await mesh.client(), { concurrency: CONCURRENCY, deadlineMs: DEADLINE_MS, pauseMs: 5 });
    await servedByAll(replicas, Date.now());
    await traffic.waitCalls(300);
  });

  after(async () => {
    await traffic?.stop();
    await mesh?.stop();
  });

  /**
   * The replica that served the most calls of the last second, once nearly every loop has a call
   * in flight: p2c_ewma may keep a replica out for seconds (one slow call at its cold start), and a
   * fault must catch calls on the replica for its bound to mean anything.
   */
  async function busiest(): Promise<Replica> {
    const recent = traffic.issuedBetween(Date.now() - 1_000);
    const served = (replica: Replica) => recent.filter((call) => call.peer === replica.endpoint).length;
    const chosen = replicas.reduce((best, replica) => (served(replica) > served(best) ? replica : best));
    await waitFor("calls in flight", () => traffic.inFlight >= CONCURRENCY - 1, 5_000, 1);
    return chosen;
  }

  /** Resolves once each of `expected` has served a call issued at or after `since`. */
  async function servedByAll(expected: Replica[], since: number, timeoutMs = 10_000): Promise<number> {
    let firstAt = 0;
    await waitFor(
      `calls served by ${expected.map((replica) => replica.name).join(", ")}`,
      () =>
        expected.every((replica) => {
          const served = traffic.issuedBetween(since).find((call) => call.code === 0 && call.peer === replica.endpoint);
          if (served) firstAt = Math.max(firstAt, served.startedAt);
          return served !== undefined;
        }),
      timeoutMs,
    );
    return firstAt;
  }

  it(`SIGKILL of 1 of 3: no GetProduct fails that gRFC A6 lets grpc-js retry (UNAVAILABLE is retried; only a call the dead replica had begun answering is committed), the replica leaves rotation within ${ROUTED_AROUND_MS / 1000} s, and serves again within ${RESTART_SERVED_MS / 1000} s of a restart`, async () => {
    const killed = await busiest();
    const killedAt = killed.kill();
    const unhealthyAt = await mesh.waitHealth(killed, HealthState.HEALTH_STATE_UNHEALTHY, 10_000, killedAt);
    await traffic.waitCalls(1);
    await new Promise((resolve) => setTimeout(resolve, AFTER_KILL_MS));
    // Every call that may have been in flight on it when it died, and every one issued since.
    const window = traffic.issuedBetween(killedAt - DEADLINE_MS, killedAt + AFTER_KILL_MS);
    const inFlight = window.filter((call) => call.startedAt <= killedAt && call.endedAt >= killedAt);
    const account = `${describeCalls(window, (peer) => mesh.replicaOf(peer))}; ${inFlight.length} in flight at the kill`;
    assert.ok(inFlight.length > 0, `no call was in flight at the kill: the scenario proves nothing (${account})`);
    const committed = committedToDead(window, killed.endpoint, killedAt);
    const failed = failures(window).filter((call) => !committed.includes(call));
    assert.deepEqual(failed, [], `failed calls after the SIGKILL (bound: 0 but the committed ones): ${account}\n${mesh.describe()}`);
    assert.ok(committed.length <= inFlight.length, `${committed.length} committed calls lost, more than the ${inFlight.length} in flight (${account})`);
    assert.ok(unhealthyAt - killedAt < ROUTED_AROUND_MS, `UNHEALTHY ${unhealthyAt - killedAt} ms after the kill (bound ${ROUTED_AROUND_MS} ms)`);
    console.log(`      SIGKILL of ${killed.name}: ${account}, ${committed.length} of them lost after their headers; UNHEALTHY after ${unhealthyAt - killedAt} ms`);

    const restartedAt = Date.now();
    await mesh.restart(killed);
    const servedAt = await servedByAll([killed], restartedAt, RESTART_SERVED_MS);
    assert.ok(servedAt - restartedAt <= RESTART_SERVED_MS, `first call ${servedAt - restartedAt} ms after the spawn (bound ${RESTART_SERVED_MS} ms)`);
    console.log(`      restart: first call served ${servedAt - restartedAt} ms after the spawn`);
  });

  it(`SIGSTOP of 1 of 3: no new call lands on it ${ROUTED_AROUND_MS / 1000} s after, no call outlives its deadline; SIGCONT brings it back within ${THAWED_SERVED_MS / 1000} s`, async () => {
    const frozen = await busiest();
    const frozenAt = frozen.freeze();
    const unhealthyAt = await mesh.waitHealth(frozen, HealthState.HEALTH_STATE_UNHEALTHY, FROZEN_MS, frozenAt);
    await new Promise((resolve) => setTimeout(resolve, frozenAt + FROZEN_MS - Date.now()));
    const thawedAt = frozen.thaw();
    const servedAt = await servedByAll([frozen], thawedAt, THAWED_SERVED_MS);
    await traffic.waitCalls(1);

    const window = traffic.issuedBetween(frozenAt - DEADLINE_MS, thawedAt);
    const account = describeCalls(window, (peer) => mesh.replicaOf(peer));
    const lateToFrozen = window.filter((call) => call.startedAt >= frozenAt + ROUTED_AROUND_MS && call.peer === frozen.endpoint);
    assert.deepEqual(lateToFrozen, [], `calls issued to the frozen replica ${ROUTED_AROUND_MS} ms or more after SIGSTOP: ${account}`);
    const overdue = window.filter((call) => call.endedAt - call.startedAt > DEADLINE_MS + DEADLINE_SLACK_MS);
    assert.deepEqual(overdue, [], `calls that outlived their ${DEADLINE_MS} ms deadline: ${account}`);
    const lastToFrozen = Math.max(frozenAt, ...window.filter((call) => call.peer === frozen.endpoint).map((call) => call.startedAt));
    console.log(
      `      SIGSTOP of ${frozen.name}: ${account}; ${failures(window).length} failed; last call sent to it ${lastToFrozen - frozenAt} ms after SIGSTOP; ` +
        `UNHEALTHY after ${unhealthyAt - frozenAt} ms; SIGCONT to a call served by it ${servedAt - thawedAt} ms`,
    );
  });
});

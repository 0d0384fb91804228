import assert from "node:assert/strict";
import { status } from "@grpc/grpc-js";
import { ChaosMesh, chaosMeshConfig } from "../support/chaos";
import { Traffic, describeCalls, failures } from "../support/traffic";

/** The fast replicas answer in this; the slow one takes 10× as long. */
const FAST_DELAY_MS = 20;
const SLOW_DELAY_MS = 10 * FAST_DELAY_MS;
/** Deadline of every call: well above a fast answer, below a slow one, so a call sent to the slow replica fails. */
const DEADLINE_MS = 150;
/** How long traffic runs, and how long p2c_ewma may take to learn which replica is slow. */
const RUN_MS = 6_000;
const LEARNING_MS = 1_000;
/** The bounds: failed calls (all timeouts) over the run, and the slow replica's share once learnt (1/3 under round_robin). */
const MAX_FAILED_PERCENT = 2;
const MAX_SLOW_SHARE_PERCENT = 5;

describe("chaos: one catalog replica 10× slower than the others (p2c_ewma, deploy/mesh.yaml's catalog policy)", function () {
  this.timeout(60_000);
  let mesh: ChaosMesh;
  let traffic: Traffic | undefined;

  before(async function () {
    mesh = await ChaosMesh.start({ meshConfig: chaosMeshConfig(10_000) });
  });

  after(async () => {
    await traffic?.stop();
    await mesh?.stop();
  });

  it(`fails at most ${MAX_FAILED_PERCENT} % of calls (deadline ${DEADLINE_MS} ms, the slow replica takes ${SLOW_DELAY_MS} ms) and sends the slow replica at most ${MAX_SLOW_SHARE_PERCENT} % after ${LEARNING_MS} ms`, async () => {
    await mesh.addReplica("fast-0", { delayMs: FAST_DELAY_MS });
    await mesh.addReplica("fast-1", { delayMs: FAST_DELAY_MS });
    const slow = await mesh.addReplica("slow", { delayMs: SLOW_DELAY_MS });
    const startedAt = Date.now();
    traffic = new Traffic(await mesh.client(), { concurrency: 6, deadlineMs: DEADLINE_MS, pauseMs: 5 });
    await new Promise((resolve) => setTimeout(resolve, RUN_MS));
    await traffic.stop();

    const all = traffic.calls;
    const learnt = traffic.issuedBetween(startedAt + LEARNING_MS);
    const account = describeCalls(all, (peer) => mesh.replicaOf(peer));
    const failed = failures(all);
    assert.ok(all.length > 500, `too few calls to judge: ${account}`);
    assert.ok(failed.every((call) => call.code === status.DEADLINE_EXCEEDED), `failures other than timeouts: ${account}`);
    assert.ok((100 * failed.length) / all.length <= MAX_FAILED_PERCENT, `${failed.length} of ${all.length} calls failed: ${account}`);
    const slowShare = (100 * learnt.filter((call) => call.peer === slow.endpoint).length) / learnt.length;
    assert.ok(slowShare <= MAX_SLOW_SHARE_PERCENT, `the slow replica got ${slowShare.toFixed(1)} % of the calls after ${LEARNING_MS} ms: ${account}`);
    const latencies = learnt.map((call) => call.endedAt - call.startedAt).sort((a, b) => a - b);
    const p99 = latencies[Math.floor(0.99 * (latencies.length - 1))];
    console.log(`      slow replica: ${account}; slow share after ${LEARNING_MS} ms ${slowShare.toFixed(2)} %; p99 ${p99} ms`);
  });
});

import assert from "node:assert/strict";
import { ControlPlane } from "../../mesh/controlplane/control-plane";
import { RegistryLease } from "../../mesh/registry-lease";
import { catalogEndpoint } from "../support/endpoints";
import { captureLog } from "../support/log-capture";
import type { CapturedLog } from "../support/log-capture";
import { ManualClock, fixedRandom } from "../support/manual-clock";
import { freePorts } from "../support/ports";
import { waitFor } from "../support/wait";

const ENDPOINT = catalogEndpoint();

/** The lease's own lines (component registry-lease), as message and level. */
function leaseLines(log: CapturedLog): { msg: string; level: number; line: Record<string, unknown> }[] {
  return log.lines
    .filter((line) => line.component === "registry-lease")
    .map((line) => ({ msg: String(line.msg), level: Number(line.level), line }));
}

describe("registry lease (pinned clock, real control plane)", function () {
  let clock: ManualClock;
  let log: CapturedLog;
  let controlPlane: ControlPlane | undefined;
  let lease: RegistryLease | undefined;

  beforeEach(() => {
    clock = new ManualClock();
    log = captureLog("debug");
  });
  afterEach(async () => {
    await lease?.stop();
    await controlPlane?.stop();
    lease = undefined;
    controlPlane = undefined;
  });

  async function startControlPlane(port = 0): Promise<string> {
    controlPlane = new ControlPlane({ logger: log.logger, warmupMs: 0 });
    return `127.0.0.1:${await controlPlane.listen(`127.0.0.1:${port}`)}`;
  }

  const keepAlives = () => log.lines.filter((line) => line.method === "KeepAlive" && line.msg === "call").length;

  it("renews the lease every third of its TTL, on the clock it is given", async () => {
    const address = await startControlPlane();
    lease = new RegistryLease(address, ENDPOINT, log.logger, { leaseTtlMs: 3_000, clock, random: fixedRandom() });
    await lease.start();
    assert.ok(lease.isRegistered);
    assert.deepEqual(clock.pendingDelays(), [1_000]);
    clock.advance(999);
    assert.equal(keepAlives(), 0);
    clock.advance(1);
    await waitFor("the first keep-alive", () => keepAlives() === 1);
    await waitFor("the next keep-alive to be scheduled", () => clock.pendingDelays().length === 1);
    assert.deepEqual(clock.pendingDelays(), [1_000]);
  });

  it("retries registration with jittered backoff up to a keep-alive interval, logging the failure once, without a stack", async () => {
    const [port] = await freePorts(1);
    lease = new RegistryLease(`127.0.0.1:${port}`, ENDPOINT, log.logger, { clock, random: fixedRandom() });
    await lease.start();
    assert.equal(lease.isRegistered, false);
    const delays: number[] = [];
    for (let attempt = 0; attempt < 6; attempt += 1) {
      await waitFor("the next attempt to be scheduled", () => clock.pendingDelays().length === 1);
      const [delay] = clock.pendingDelays();
      delays.push(delay);
      clock.advance(delay);
    }
    // 1 s, ×1.6, capped at 3 s: a third of the control plane's default lease (REGISTER_RETRY_MAX_MS).
    assert.deepEqual(delays, [1_000, 1_600, 2_560, 3_000, 3_000, 3_000]);
    await waitFor("the sixth failure", () => leaseLines(log).length >= 6);
    const lines = leaseLines(log);
    assert.deepEqual(lines.filter((line) => line.level >= 40).map((line) => line.msg), ["registration failed; retrying with backoff"]);
    assert.ok(lines.every((line) => line.line.err === undefined), "no error object, so no stack trace");
    assert.equal(lines[0].line.code, "UNAVAILABLE");

    await startControlPlane(port);
    await waitFor(
      "the lease to register once the control plane is there",
      () => {
        if (!lease!.isRegistered && clock.pendingDelays().length === 1) clock.advance(clock.pendingDelays()[0]);
        return lease!.isRegistered;
      },
      10_000,
    );
    const registered = leaseLines(log).find((line) => line.msg === "registered");
    assert.ok((registered?.line.failedAttempts as number) >= 6, JSON.stringify(registered?.line));
  });

  it("says once that keep-alives fail while the control plane is gone, and registers again when it is back", async () => {
    const address = await startControlPlane();
    const port = Number(address.split(":")[1]);
    lease = new RegistryLease(address, ENDPOINT, log.logger, { leaseTtlMs: 3_000, clock, random: fixedRandom() });
    await lease.start();
    await controlPlane!.stop();
    controlPlane = undefined;
    for (let attempt = 0; attempt < 4; attempt += 1) {
      const before = leaseLines(log).length;
      clock.advance(clock.pendingDelays()[0]);
      await waitFor("the keep-alive to fail", () => leaseLines(log).length > before);
    }
    const failing = leaseLines(log).filter((line) => line.msg === "keep-alive failed; retrying with backoff");
    assert.deepEqual(failing.map((line) => line.level), [40, 20, 20, 20], "warn once, then debug");
    assert.ok(clock.pendingDelays()[0] <= 1_000, "never longer than a keep-alive interval (TTL/3)");

    await startControlPlane(port);
    await waitFor(
      "the lease to be lost and registered again",
      () => {
        const isBack = controlPlane!.registry.entries("catalog").length === 1;
        if (!isBack && clock.pendingDelays().length === 1) clock.advance(clock.pendingDelays()[0]);
        // The registry holds the entry before the lease has read the answer and said so.
        return isBack && leaseLines(log).filter((line) => line.msg === "registered").length === 2;
      },
      10_000,
    );
    const messages = leaseLines(log).map((line) => line.msg).filter((msg) => !msg.startsWith("keep-alive failed"));
    assert.deepEqual(messages, [
      "registered",
      "lease lost (the control plane restarted or let it expire); registering again",
      "registered",
    ]);
  });
});

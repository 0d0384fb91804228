import assert from "node:assert/strict";
import { Server, ServerCredentials, status } from "@grpc/grpc-js";
import type { ServerWritableStream } from "@grpc/grpc-js";
import { HealthCheckResponse_ServingStatus, HealthService } from "../../../generated/ts/health/v1/health";
import type { HealthCheckRequest, HealthCheckResponse, HealthServer } from "../../../generated/ts/health/v1/health";
import { HealthState } from "../../../generated/ts/protomesh/registry/v1/registry";
import { HealthProber, PROBE_HEARTBEAT_MS, PROBE_HEARTBEAT_TIMEOUT_MS } from "../../../mesh/controlplane/prober";
import { Registry } from "../../../mesh/controlplane/registry";
import { catalogEndpoint } from "../../support/endpoints";
import { captureLog } from "../../support/log-capture";
import { ManualClock, fixedRandom } from "../../support/manual-clock";
import { freePorts } from "../../support/ports";
import { waitFor } from "../../support/wait";

/**
 * A real grpc-js server whose Health answers Watch with SERVING and keeps the stream open, but never
 * answers Check while `isFrozen`: from outside, a process that hangs with its socket open.
 */
async function freezableEndpoint(
  options: { answerAfterMs?: number; onCheck?: () => void } = {},
): Promise<{ port: number; freeze(isFrozen: boolean): void; close(): void }> {
  let isFrozen = false;
  const watches = new Set<ServerWritableStream<HealthCheckRequest, HealthCheckResponse>>();
  const implementation: HealthServer = {
    check: (_call, callback) => {
      options.onCheck?.();
      if (isFrozen) return;
      const answer = () => callback(null, { status: HealthCheckResponse_ServingStatus.SERVING });
      if (options.answerAfterMs === undefined) answer();
      else setTimeout(answer, options.answerAfterMs);
    },
    watch: (call) => {
      watches.add(call);
      call.on("cancelled", () => watches.delete(call));
      call.write({ status: HealthCheckResponse_ServingStatus.SERVING });
    },
    list: (_call, callback) => callback({ code: status.UNIMPLEMENTED }),
  };
  const server = new Server();
  server.addService(HealthService, implementation);
  const port = await new Promise<number>((resolve, reject) =>
    server.bindAsync("127.0.0.1:0", ServerCredentials.createInsecure(), (error, bound) => (error ? reject(error) : resolve(bound))),
  );
  return {
    port,
    freeze: (value) => (isFrozen = value),
    close: () => {
      for (const call of watches) call.end();
      server.forceShutdown();
    },
  };
}

/** Resolves after the event loop has read its sockets once (setImmediate runs after the poll phase). */
const nextTurn = () => new Promise<void>((resolve) => setImmediate(resolve));

describe("control plane: health prober (pinned clock)", function () {
  let clock: ManualClock;
  let registry: Registry;
  let prober: HealthProber;
  let log: ReturnType<typeof captureLog>;
  const closers: (() => void)[] = [];

  beforeEach(() => {
    clock = new ManualClock();
    log = captureLog("debug");
    const { logger } = log;
    registry = new Registry({ logger, clock });
    prober = new HealthProber(registry, logger, { clock, random: fixedRandom() });
  });
  afterEach(() => {
    prober.close();
    registry.close();
    for (const close of closers.splice(0)) close();
  });

  const healthOf = (port: number) => registry.entries("catalog").find((entry) => entry.endpoint.port === port);
  const staticEndpoint = (port: number) => catalogEndpoint({ port });

  it("takes an endpoint whose heartbeat goes unanswered out after period + timeout of its clock, not before", async () => {
    const endpoint = await freezableEndpoint();
    closers.push(endpoint.close);
    registry.setStatic([staticEndpoint(endpoint.port)]);
    await waitFor("the Watch to report SERVING", () => healthOf(endpoint.port)?.health === HealthState.HEALTH_STATE_HEALTHY);

    endpoint.freeze(true);
    clock.advance(PROBE_HEARTBEAT_MS); // the heartbeat Check goes out, and gets no answer
    clock.advance(PROBE_HEARTBEAT_TIMEOUT_MS - 1);
    await nextTurn();
    assert.equal(healthOf(endpoint.port)?.health, HealthState.HEALTH_STATE_HEALTHY, "still in rotation 1 ms before the bound");
    clock.advance(1);
    await nextTurn(); // the verdict waits for the sockets to be read once
    assert.equal(healthOf(endpoint.port)?.health, HealthState.HEALTH_STATE_UNHEALTHY);
    assert.equal(healthOf(endpoint.port)?.healthDetail, `heartbeat failed: no answer within ${PROBE_HEARTBEAT_TIMEOUT_MS} ms`);

    endpoint.freeze(false);
    clock.advance(PROBE_HEARTBEAT_MS);
    await waitFor("the next heartbeat to bring it back", () => healthOf(endpoint.port)?.health === HealthState.HEALTH_STATE_HEALTHY);
  });

  it("looks only at the changed service's endpoints on a registry change: probes its new one, stops its gone one", async () => {
    const [catalog, orders] = [await freezableEndpoint(), await freezableEndpoint()];
    closers.push(catalog.close, orders.close);
    registry.register(catalogEndpoint({ port: catalog.port }));
    const { leaseId } = registry.register(catalogEndpoint({ service: "orders", port: orders.port }));
    const isHealthy = (service: string, port: number) =>
      registry.entries(service).some((entry) => entry.endpoint.port === port && entry.health === HealthState.HEALTH_STATE_HEALTHY);
    await waitFor("both endpoints HEALTHY", () => isHealthy("catalog", catalog.port) && isHealthy("orders", orders.port));

    const asked: string[] = [];
    const entries = registry.entries.bind(registry);
    registry.entries = (service) => {
      asked.push(service);
      return entries(service);
    };
    const second = registry.register(catalogEndpoint({ service: "orders", port: catalog.port }));
    assert.deepEqual(asked, ["orders"], "the prober read orders' endpoints only");
    await waitFor("the new endpoint probed HEALTHY", () => isHealthy("orders", catalog.port));
    asked.length = 0;
    registry.deregister(leaseId);
    registry.deregister(second.leaseId);
    assert.deepEqual(asked, ["orders", "orders"]);
    assert.ok(isHealthy("catalog", catalog.port), "catalog's probe untouched");
  });

  it("re-opens a failed Watch with gRPC's jittered backoff, capped at 2 s", async () => {
    const [port] = await freePorts(1);
    registry.setStatic([staticEndpoint(port)]);
    await waitFor("the Watch to fail", () => healthOf(port)?.health === HealthState.HEALTH_STATE_UNHEALTHY);
    const retries = () => log.lines.filter((line) => line.msg === "health probe failed").map((line) => line.retryInMs as number);
    for (let attempt = 1; attempt <= 4; attempt += 1) {
      await waitFor(`failure ${attempt} to schedule its retry`, () => retries().length === attempt);
      clock.advance(retries()[attempt - 1]);
    }
    assert.deepEqual(retries(), [1_000, 1_600, 2_000, 2_000]);
  });
});

describe("control plane: health prober (the process's own clock)", function () {
  it("keeps an endpoint HEALTHY when the prober itself stalls past the heartbeat's timeout and the answer came in time", async function () {
    this.timeout(10_000);
    const log = captureLog("debug");
    const registry = new Registry({ logger: log.logger });
    const prober = new HealthProber(registry, log.logger);
    let checks = 0;
    // Answers each Check 200 ms after it arrives: well within the timeout, unless the prober stalls.
    const endpoint = await freezableEndpoint({ answerAfterMs: 200, onCheck: () => (checks += 1) });
    try {
      registry.setStatic([catalogEndpoint({ port: endpoint.port })]);
      const health = () => registry.entries("catalog")[0]?.health;
      await waitFor("the Watch to report SERVING", () => health() === HealthState.HEALTH_STATE_HEALTHY);
      await waitFor("a heartbeat Check to be in flight", () => checks > 0, 3_000, 1);
      // The event loop of the whole process stops for longer than the timeout: the endpoint's
      // answer is due first, the prober's timeout after it, and both fire late.
      const linesBefore = log.lines.length;
      const stallUntil = Date.now() + PROBE_HEARTBEAT_TIMEOUT_MS + 500;
      while (Date.now() < stallUntil);
      await waitFor("the next heartbeats", () => checks >= 3, 5_000);
      const changes = log.lines.slice(linesBefore).filter((line) => line.msg === "endpoint health changed");
      assert.deepEqual(changes, [], "the stall is the prober's own: no health change");
      assert.equal(health(), HealthState.HEALTH_STATE_HEALTHY);
    } finally {
      prober.close();
      registry.close();
      endpoint.close();
    }
  });
});

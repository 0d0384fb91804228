import assert from "node:assert/strict";
import net from "node:net";
import { HealthState } from "../../../generated/ts/protomesh/registry/v1/registry";
import { ControlPlane } from "../../../mesh/controlplane/control-plane";
import { CLUSTER_LOAD_ASSIGNMENT_TYPE_URL } from "../../../mesh/controlplane/xds-protos";
import { createServer } from "../../../mesh/server";
import type { MeshServer } from "../../../mesh/server";
import { catalogEndpoint } from "../../support/endpoints";
import { captureLog } from "../../support/log-capture";
import type { CapturedLog } from "../../support/log-capture";
import { ManualClock } from "../../support/manual-clock";
import { waitFor } from "../../support/wait";
import { AdsStream, endpointPorts } from "./ads-stream";
import type { AdsResponse } from "./ads-stream";

/**
 * The warm-up after a control plane restart (mesh/controlplane/warmup.ts): clients that reconnect
 * holding endpoints keep them until the service's replicas are back and probed, and then get them
 * all in one response, instead of a list that grows from one. Real ADS streams and real health
 * servers on 127.0.0.1; the control plane's clock (warm-up, heartbeats, leases) is pinned.
 */

const WARMUP_MS = 1_000;
/** Real time for a response that is not coming to have arrived had it been sent. */
const SETTLE_MS = 200;
/** The ports listed HEALTHY in a ClusterLoadAssignment response. */
function healthyPorts(response: AdsResponse): number[] {
  type Locality = { lb_endpoints: Array<{ health_status: string; endpoint: { address: { socket_address: { port_value: number } } } }> };
  return response.resources.flatMap((resource) =>
    (resource.endpoints as Locality[]).flatMap((locality) =>
      locality.lb_endpoints.filter((lb) => lb.health_status === "HEALTHY").map((lb) => lb.endpoint.address.socket_address.port_value),
    ),
  );
}
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

describe("control plane: the warm-up after a restart", function () {
  let clock: ManualClock;
  let log: CapturedLog;
  let controlPlane: ControlPlane;
  let address: string;
  const closers: (() => unknown)[] = [];

  beforeEach(async () => {
    clock = new ManualClock();
    log = captureLog("debug");
    controlPlane = new ControlPlane({ logger: log.logger, clock, warmupMs: WARMUP_MS });
    address = `127.0.0.1:${await controlPlane.listen("127.0.0.1:0")}`;
  });
  afterEach(async () => {
    for (const close of closers.splice(0).reverse()) await close();
    await controlPlane.stop();
  });

  /** An ADS stream subscribed to catalog's ClusterLoadAssignment; `resumeVersion` as a reconnecting client. */
  const subscribe = async (nodeId: string, resumeVersion?: string): Promise<AdsStream> => {
    const stream = new AdsStream(address, nodeId, { resumeVersion });
    closers.push(() => stream.close());
    stream.subscribe(CLUSTER_LOAD_ASSIGNMENT_TYPE_URL, ["catalog"]);
    const [first] = await stream.next();
    assert.deepEqual(endpointPorts(first), [], `${nodeId}: nothing to send yet`);
    return stream;
  };
  /** A kit server (grpc.health.v1 SERVING) registered as a catalog endpoint, probed HEALTHY. */
  const registerReplica = async (): Promise<number> => {
    const server: MeshServer = createServer({ name: "catalog", logger: log.logger });
    const port = await server.listen("127.0.0.1:0");
    closers.push(() => server.drain(0));
    controlPlane.registry.register(catalogEndpoint({ port }));
    await waitFor(`the replica on ${port} to be probed HEALTHY`, () =>
      controlPlane.registry.entries("catalog").some((entry) => entry.endpoint.port === port && entry.health === HealthState.HEALTH_STATE_HEALTHY),
    );
    return port;
  };
  /** A port that accepts TCP connections and never speaks HTTP/2: an endpoint whose probe never answers. */
  const silentPort = async (): Promise<number> => {
    const sockets = new Set<net.Socket>();
    const server = net.createServer((socket) => sockets.add(socket));
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    closers.push(() => {
      for (const socket of sockets) socket.destroy();
      server.close();
    });
    return (server.address() as net.AddressInfo).port;
  };

  it("holds a service's endpoints back from a resuming stream until its registrations are quiet, then sends them all at once", async () => {
    const resuming = await subscribe("resuming", "17");
    const fresh = await subscribe("fresh");

    const first = await registerReplica();
    assert.deepEqual(endpointPorts((await fresh.next())[0]), [first], "a client holding nothing gets what there is");
    clock.advance(900);
    const second = await registerReplica(); // still coming back: the hold lasts half a warm-up past it
    const both = [first, second].sort((a, b) => a - b);
    // Registered (UNHEALTHY until probed), then HEALTHY: take what the fresh stream got up to that.
    await waitFor("the fresh stream to list both HEALTHY", () => healthyPorts(fresh.responses.at(-1)!).length === 2);
    await fresh.next(fresh.untaken.length);

    clock.advance(100 + 250); // the warm-up's minimum has passed, but catalog registered 350 ms ago
    await sleep(SETTLE_MS);
    assert.deepEqual(resuming.untaken, [], "nothing sent while the service is still registering");

    clock.advance(250); // 600 ms after the last registration
    const [released] = await resuming.next();
    assert.deepEqual(healthyPorts(released), both, "the whole list, HEALTHY, in one response");
    await sleep(SETTLE_MS);
    assert.deepEqual(fresh.untaken, [], "the release sends nothing to a stream that had it");
    assert.ok(log.lines.some((line) => line.msg === "warm-up over"));
  });

  it("ends the warm-up at three times its length even when an endpoint is never probed", async () => {
    const resuming = await subscribe("resuming", "17");
    const healthy = await registerReplica();
    const silent = await silentPort();
    controlPlane.registry.register(catalogEndpoint({ port: silent }));
    assert.equal(controlPlane.registry.entries("catalog").find((entry) => entry.endpoint.port === silent)?.health, HealthState.HEALTH_STATE_PENDING);

    clock.advance(3 * WARMUP_MS - 250);
    await sleep(SETTLE_MS);
    assert.deepEqual(resuming.untaken, [], "held while an endpoint is not probed yet");
    clock.advance(250);
    const [released] = await resuming.next();
    assert.deepEqual(endpointPorts(released), [healthy, silent].sort((a, b) => a - b));
  });

  it("holds nothing back from a stream that resumes after the warm-up", async () => {
    const port = await registerReplica();
    clock.advance(WARMUP_MS);
    await waitFor("the warm-up to end", () => log.lines.some((line) => line.msg === "warm-up over"));
    const stream = new AdsStream(address, "late", { resumeVersion: "17" });
    closers.push(() => stream.close());
    stream.subscribe(CLUSTER_LOAD_ASSIGNMENT_TYPE_URL, ["catalog"]);
    assert.deepEqual(endpointPorts((await stream.next())[0]), [port]);
  });
});

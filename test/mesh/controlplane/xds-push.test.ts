import assert from "node:assert/strict";
import { Server, ServerCredentials, status } from "@grpc/grpc-js";
import type { UntypedServiceImplementation } from "@grpc/grpc-js";
import { ControlPlane } from "../../../mesh/controlplane/control-plane";
import { FAULT_FILTER_NAME } from "../../../mesh/controlplane/fault-resources";
import type { XdsResource } from "../../../mesh/controlplane/resources";
import { XdsServer } from "../../../mesh/controlplane/xds-server";
import type { ResourceSource } from "../../../mesh/controlplane/xds-server";
import {
  CLUSTER_LOAD_ASSIGNMENT_TYPE_URL,
  CLUSTER_TYPE_URL,
  LISTENER_TYPE_URL,
  ROUTE_CONFIGURATION_TYPE_URL,
  XDS_TYPE_URLS,
} from "../../../mesh/controlplane/xds-protos";
import { catalogEndpoint } from "../../support/endpoints";
import { captureLog } from "../../support/log-capture";
import { waitFor } from "../../support/wait";
import { AdsStream, endpointPorts, resourceNames } from "./ads-stream";
import type { AdsResponse } from "./ads-stream";

/**
 * Which streams a change reaches (issue 11, point 3): only those subscribed to the resources it
 * alters, each resource built once per change. Real ADS streams over grpc-js against a real
 * ControlPlane (or an XdsServer over a counting ResourceSource) on 127.0.0.1.
 */

const typesOf = (responses: AdsResponse[]) => responses.map((response) => response.type_url);

/** Subscribes `stream` to all four types of `service`, as grpc-js-xds does for xds:///service, and takes the answers. */
async function subscribeAll(stream: AdsStream, service: string): Promise<void> {
  for (const typeUrl of XDS_TYPE_URLS) stream.subscribe(typeUrl, [service]);
  await stream.next(XDS_TYPE_URLS.length);
}

describe("control plane: xDS pushes reach the subscribers of what changed", function () {
  let controlPlane: ControlPlane;
  let address: string;
  const streams: AdsStream[] = [];

  const open = (nodeId: string): AdsStream => {
    const stream = new AdsStream(address, nodeId);
    streams.push(stream);
    return stream;
  };
  const register = (service: string, port: number) => controlPlane.registry.register(catalogEndpoint({ service, port }));

  beforeEach(async () => {
    controlPlane = new ControlPlane({ logger: captureLog("warn").logger, warmupMs: 0 });
    address = `127.0.0.1:${await controlPlane.listen("127.0.0.1:0")}`;
  });
  afterEach(async () => {
    for (const stream of streams.splice(0)) stream.close();
    await controlPlane.stop();
  });

  it("sends a service's new endpoints to each of its subscribers and nothing to another service's", async () => {
    const catalog = [open("catalog-1"), open("catalog-2"), open("catalog-3")];
    const orders = open("orders");
    for (const stream of catalog) await subscribeAll(stream, "catalog");
    await subscribeAll(orders, "orders");

    register("catalog", 6001);
    for (const stream of catalog) {
      const [response] = await stream.next();
      assert.equal(response.type_url, CLUSTER_LOAD_ASSIGNMENT_TYPE_URL);
      assert.deepEqual(endpointPorts(response), [6001]);
    }
    // The orders stream's next response is orders' own change: nothing of catalog's came before it.
    register("orders", 7001);
    const [ordersResponse] = await orders.next();
    assert.deepEqual([ordersResponse.type_url, ...resourceNames(ordersResponse), ...endpointPorts(ordersResponse)], [
      CLUSTER_LOAD_ASSIGNMENT_TYPE_URL,
      "orders",
      7001,
    ]);
    assert.deepEqual(orders.untaken, []);
    // And the catalog streams got nothing of orders' change.
    register("catalog", 6002);
    for (const stream of catalog) {
      const responses = await stream.next();
      assert.deepEqual(endpointPorts(responses[0]), [6001, 6002]);
      assert.deepEqual(stream.untaken, []);
    }
  });

  it("tells wildcard LDS and CDS subscribers of a service that comes and goes, and not of its endpoints' changes", async () => {
    const wildcard = open("wildcard");
    wildcard.subscribe(LISTENER_TYPE_URL, []);
    wildcard.subscribe(CLUSTER_TYPE_URL, []);
    assert.deepEqual((await wildcard.next(2)).map(resourceNames), [[], []]);

    const { leaseId } = register("inventory", 6001);
    const added = await wildcard.next(2);
    assert.deepEqual(typesOf(added), [LISTENER_TYPE_URL, CLUSTER_TYPE_URL]);
    assert.deepEqual(added.map(resourceNames), [["inventory"], ["inventory"]]);

    const second = register("inventory", 6002); // a second endpoint: the Listener and the Cluster are the same
    register("orders", 7001);
    const more = await wildcard.next(2);
    assert.deepEqual(more.map(resourceNames), [
      ["inventory", "orders"],
      ["inventory", "orders"],
    ]);
    assert.deepEqual(wildcard.untaken, [], "inventory's second endpoint sent no Listener or Cluster");

    controlPlane.registry.deregister(leaseId); // inventory keeps an endpoint: still served
    controlPlane.registry.deregister(second.leaseId);
    const removed = await wildcard.next(2);
    assert.deepEqual(typesOf(removed), [LISTENER_TYPE_URL, CLUSTER_TYPE_URL]);
    assert.deepEqual(removed.map(resourceNames), [["orders"], ["orders"]]);
    assert.deepEqual(wildcard.untaken, [], "the first removal sent nothing");
  });

  it("pushes a fault to its service's Listener and RouteConfiguration subscribers only, Listener first", async () => {
    const catalog = open("catalog");
    const orders = open("orders");
    await subscribeAll(catalog, "catalog");
    await subscribeAll(orders, "orders");
    const abort = { service: "catalog", method: "", delay: undefined, abort: { code: status.ABORTED, percent: 100 }, ttlMs: 60_000 };

    controlPlane.faults.inject(abort);
    const faulted = await catalog.next(2);
    assert.deepEqual(typesOf(faulted), [LISTENER_TYPE_URL, ROUTE_CONFIGURATION_TYPE_URL]);
    const listener = faulted[0].resources[0] as { api_listener: { api_listener: { http_filters: { name: string }[] } } };
    assert.deepEqual(listener.api_listener.api_listener.http_filters.map((filter) => filter.name), [FAULT_FILTER_NAME, "router"]);

    controlPlane.faults.inject({ ...abort, service: "orders" });
    assert.deepEqual(typesOf(await orders.next(2)), [LISTENER_TYPE_URL, ROUTE_CONFIGURATION_TYPE_URL]);
    assert.deepEqual(orders.untaken, [], "catalog's fault sent orders' subscriber nothing");
    register("catalog", 6001);
    assert.deepEqual(typesOf(await catalog.next()), [CLUSTER_LOAD_ASSIGNMENT_TYPE_URL]);
    assert.deepEqual(catalog.untaken, [], "no Cluster or ClusterLoadAssignment for a fault, nothing of orders' fault");
  });

  it("follows a stream that changes its subscription: the new service's changes reach it, the old one's do not", async () => {
    const stream = open("moving");
    stream.subscribe(CLUSTER_LOAD_ASSIGNMENT_TYPE_URL, ["catalog"]);
    await stream.next();
    stream.subscribe(CLUSTER_LOAD_ASSIGNMENT_TYPE_URL, ["orders"]);
    assert.deepEqual(resourceNames((await stream.next())[0]), ["orders"]);

    register("catalog", 6001);
    register("orders", 7001);
    const [response] = await stream.next();
    assert.deepEqual([...resourceNames(response), ...endpointPorts(response)], ["orders", 7001]);
    assert.deepEqual(stream.untaken, []);
  });
});

describe("xDS server: one build per resource and change", function () {
  /** A ResourceSource of ClusterLoadAssignments, one endpoint each, that counts what it is asked. */
  class CountingSource implements ResourceSource {
    readonly ports = new Map<string, number>();
    asked: string[] = [];

    resource(typeUrl: string, name: string): XdsResource | undefined {
      this.asked.push(name);
      const port = this.ports.get(name);
      if (typeUrl !== CLUSTER_LOAD_ASSIGNMENT_TYPE_URL || port === undefined) return undefined;
      const lbEndpoint = { endpoint: { address: { socket_address: { address: "127.0.0.1", port_value: port } } }, health_status: "HEALTHY" };
      return { "@type": CLUSTER_LOAD_ASSIGNMENT_TYPE_URL, cluster_name: name, endpoints: [{ lb_endpoints: [lbEndpoint] }] };
    }

    names(): string[] {
      return [...this.ports.keys()].sort();
    }
  }

  let source: CountingSource;
  let xds: XdsServer;
  let server: Server;
  let address: string;
  const streams: AdsStream[] = [];

  beforeEach(async () => {
    source = new CountingSource();
    source.ports.set("a", 6001).set("b", 7001);
    xds = new XdsServer(source, captureLog("warn").logger);
    server = new Server();
    server.addService(xds.definition, xds.implementation as unknown as UntypedServiceImplementation);
    const port = await new Promise<number>((resolve, reject) =>
      server.bindAsync("127.0.0.1:0", ServerCredentials.createInsecure(), (error, bound) => (error ? reject(error) : resolve(bound))),
    );
    address = `127.0.0.1:${port}`;
  });
  afterEach(() => {
    for (const stream of streams.splice(0)) stream.close();
    xds.endStreams();
    server.forceShutdown();
  });

  const subscribed = async (name: string, count: number): Promise<AdsStream[]> => {
    const opened: AdsStream[] = [];
    for (let index = 0; index < count; index += 1) {
      const stream = new AdsStream(address, `${name}-${index}`);
      streams.push(stream);
      opened.push(stream);
      stream.subscribe(CLUSTER_LOAD_ASSIGNMENT_TYPE_URL, [name]);
    }
    for (const stream of opened) await stream.next();
    return opened;
  };

  it("asks the source once for a changed resource however many streams it is sent to, and nothing of the others", async () => {
    const ofA = await subscribed("a", 5);
    const [ofB] = await subscribed("b", 1);
    source.asked = [];
    source.ports.set("a", 6002);
    xds.update([{ typeUrl: CLUSTER_LOAD_ASSIGNMENT_TYPE_URL, name: "a" }]);
    assert.deepEqual(source.asked, ["a"]);
    for (const stream of ofA) assert.deepEqual(endpointPorts((await stream.next())[0]), [6002]);

    source.ports.set("b", 7002);
    xds.update([{ typeUrl: CLUSTER_LOAD_ASSIGNMENT_TYPE_URL, name: "b" }]);
    assert.deepEqual(endpointPorts((await ofB.next())[0]), [7002]);
    assert.deepEqual(ofB.untaken, [], "a's change sent b's subscriber nothing");
  });

  it("sends nothing when a named resource is unchanged, and visits every stream on an update that names none", async () => {
    const [ofA] = await subscribed("a", 1);
    const [ofB] = await subscribed("b", 1);
    source.asked = [];
    xds.update([{ typeUrl: CLUSTER_LOAD_ASSIGNMENT_TYPE_URL, name: "a" }]);
    assert.deepEqual(source.asked, ["a"]);

    source.ports.set("a", 6003).set("b", 7003);
    xds.update();
    assert.deepEqual(source.asked.sort(), ["a", "a", "b"]);
    assert.deepEqual(endpointPorts((await ofA.next())[0]), [6003], "the first update sent nothing: the next response is the second's");
    assert.deepEqual(endpointPorts((await ofB.next())[0]), [7003]);
  });

  it("asks nothing of the source once the last subscriber of a resource has gone", async () => {
    const [ofA] = await subscribed("a", 1);
    ofA.close();
    await waitFor("the stream to close at the server", () => xds.streamCount === 0);
    source.asked = [];
    xds.update([{ typeUrl: CLUSTER_LOAD_ASSIGNMENT_TYPE_URL, name: "a" }]);
    assert.deepEqual(source.asked, []);
  });
});

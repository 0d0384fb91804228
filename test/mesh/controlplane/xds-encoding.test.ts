import assert from "node:assert/strict";
import type { MethodDefinition } from "@grpc/grpc-js";
import { status } from "@grpc/grpc-js";
import { HealthState } from "../../../generated/ts/protomesh/registry/v1/registry";
import { parseMeshConfig, policyFor } from "../../../mesh/controlplane/config";
import type { ActiveFault } from "../../../mesh/controlplane/faults";
import {
  clusterLoadAssignmentResource,
  clusterResource,
  listenerResource,
  routeConfigurationResource,
} from "../../../mesh/controlplane/resources";
import type { XdsResource } from "../../../mesh/controlplane/resources";
import { encodeDiscoveryResponse, encodeResourceEntry, preEncodedAdsService } from "../../../mesh/controlplane/xds-encoding";
import { CLUSTER_TYPE_URL, loadXdsProtos } from "../../../mesh/controlplane/xds-protos";
import { register } from "../../../mesh/register";
import { catalogEndpoint } from "../../support/endpoints";

/** proto-loader's own DiscoveryResponse serializer and deserializer, the reference. */
function adsMethod(): MethodDefinition<object, object> {
  return loadXdsProtos().adsService.StreamAggregatedResources as MethodDefinition<object, object>;
}

describe("xDS encoding: responses assembled from resources encoded once", function () {
  before(() => register());

  const config = parseMeshConfig(`
services:
  catalog:
    lb_policy: p2c_ewma
    timeout_ms: 1500
    locality_weights: { zone-a: 2 }
    outlier_detection: {}
    methods:
      GetProduct: { idempotent: true, retry: { retry_on: [unavailable], num_retries: 2 } }
    keepalive: { time_ms: 500, timeout_ms: 1000 }
`);
  const policy = policyFor(config, "catalog");
  const fault: ActiveFault = { id: "f1", service: "catalog", method: "", delay: undefined, abort: { code: status.ABORTED, percent: 50 }, expiresAt: 0 };
  const entries = [6001, 6002].map((port, index) => ({
    id: `127.0.0.1:${port}`,
    endpoint: catalogEndpoint({ port, zone: index === 0 ? "zone-a" : "zone-b" }),
    leaseId: undefined,
    health: index === 0 ? HealthState.HEALTH_STATE_HEALTHY : HealthState.HEALTH_STATE_UNHEALTHY,
    healthDetail: "",
  }));
  const resources: [string, XdsResource[]][] = [
    ["Listener, with the fault filter", [listenerResource("catalog", [fault]), listenerResource("orders")]],
    ["RouteConfiguration, with per-method routes and a fault", [routeConfigurationResource("catalog", policy, [fault])]],
    ["Cluster, load_balancing_policy with a TypedStruct", [clusterResource("catalog", policy), clusterResource("orders", policyFor(config, "orders"))]],
    ["ClusterLoadAssignment, two zones", [clusterLoadAssignmentResource("catalog", entries, policy)]],
    ["no resource at all", []],
  ];

  for (const [what, set] of resources) {
    it(`writes byte for byte what proto-loader writes: ${what}`, () => {
      const typeUrl = String(set[0]?.["@type"] ?? CLUSTER_TYPE_URL);
      const expected = adsMethod().responseSerialize({ version_info: "17", resources: set, type_url: typeUrl, nonce: "42" });
      const assembled = encodeDiscoveryResponse("17", Buffer.concat(set.map(encodeResourceEntry)), typeUrl, "42");
      assert.ok(assembled.equals(expected), `${assembled.length} bytes assembled, ${expected.length} expected`);
    });
  }

  it("writes byte for byte what proto-loader writes: a version and a nonce longer than 127 bytes (two-byte lengths)", () => {
    const [version, nonce] = ["7".repeat(300), "é".repeat(20_000)];
    const resource = listenerResource("catalog");
    const expected = adsMethod().responseSerialize({ version_info: version, resources: [resource], type_url: "t", nonce });
    assert.ok(encodeDiscoveryResponse(version, encodeResourceEntry(resource), "t", nonce).equals(expected));
  });

  it("serializes an encoded response as it is, and any other as proto-loader does", () => {
    const method = preEncodedAdsService(loadXdsProtos().adsService).StreamAggregatedResources as MethodDefinition<object, object>;
    const encoded = encodeDiscoveryResponse("1", encodeResourceEntry(listenerResource("catalog")), "t", "1");
    assert.equal(method.responseSerialize(encoded), encoded);
    const response = { version_info: "1", resources: [], type_url: "t", nonce: "1" };
    assert.ok(method.responseSerialize(response).equals(adsMethod().responseSerialize(response)));
    assert.deepEqual(
      (method.responseDeserialize(encoded) as { resources: { name: string }[] }).resources.map((resource) => resource.name),
      ["catalog"],
    );
  });
});

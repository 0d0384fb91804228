import assert from "node:assert/strict";
import type { BalancerPolicy } from "../../mesh/balancer";
import { registerBalancerPolicy, registeredBalancerPolicies, unregisterBalancerPolicy } from "../../mesh/balancer";
import { parseMeshConfig } from "../../mesh/controlplane/config";
import { clusterResource, routeConfigurationResource } from "../../mesh/controlplane/resources";
import { invalidArgument, MeshError } from "../../mesh/errors";
import { register } from "../../mesh/register";

/** A policy of the test's own: it takes one setting and encodes it into the Cluster and the route. */
const SPREAD: BalancerPolicy<{ choices: number }> = {
  parseConfig(block, field) {
    const choices = (block as { choices?: unknown } | undefined)?.choices ?? 2;
    if (typeof choices !== "number" || !Number.isInteger(choices) || choices < 2) {
      throw invalidArgument(`${field}.choices`, "must be an integer >= 2");
    }
    return { choices };
  },
  grpcConfig: (config) => ({ spread: { choices: config.choices } }),
  clusterFields: (config) => ({ lb_policy: "LEAST_REQUEST", least_request_lb_config: { choice_count: { value: config.choices } } }),
  routeFields: () => ({ hash_policy: [] }),
};

describe("load-balancing policy registry (mesh/balancer.ts)", () => {
  before(() => register());
  afterEach(() => unregisterBalancerPolicy("spread"));

  it("registers the mesh's policies, explicitly and idempotently", () => {
    register();
    register();
    assert.deepEqual(registeredBalancerPolicies(), ["round_robin", "ring_hash", "pick_first", "weighted_round_robin", "p2c_ewma", "least_request"]);
  });

  it("lets the mesh config name any registered policy, whose own block it validates", () => {
    registerBalancerPolicy("spread", SPREAD);
    const config = parseMeshConfig("services:\n  catalog:\n    lb_policy: spread\n    lb_config: { choices: 3 }\n");
    const policy = config.services.get("catalog")!;
    assert.deepEqual({ name: policy.lbPolicy, config: policy.lbConfig }, { name: "spread", config: { choices: 3 } });
    assert.throws(
      () => parseMeshConfig("services:\n  catalog:\n    lb_policy: spread\n    lb_config: { choices: 1 }\n"),
      (error: unknown) => error instanceof MeshError && error.details === "services.catalog.lb_config.choices: must be an integer >= 2",
    );
  });

  it("asks the policy how to encode it into the Cluster and the route", () => {
    registerBalancerPolicy("spread", SPREAD);
    const policy = parseMeshConfig("services:\n  catalog:\n    lb_policy: spread\n").services.get("catalog")!;
    const cluster = clusterResource("catalog", policy);
    assert.equal(cluster.lb_policy, "LEAST_REQUEST");
    assert.deepEqual(cluster.least_request_lb_config, { choice_count: { value: 2 } });
    const route = routeConfigurationResource("catalog", policy) as unknown as { virtual_hosts: { routes: { route: object }[] }[] };
    assert.deepEqual(route.virtual_hosts[0].routes[0].route, { cluster: "catalog", hash_policy: [] });
  });

  it("refuses a policy that is not registered, listing the ones that are", () => {
    assert.throws(
      () => parseMeshConfig("services:\n  catalog:\n    lb_policy: spread\n"),
      (error: unknown) => error instanceof MeshError && error.details === "services.catalog.lb_policy: must be one of round_robin, ring_hash, pick_first, weighted_round_robin, p2c_ewma, least_request",
    );
  });
});

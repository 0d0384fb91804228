import type { BalancerPolicy } from "./balancer";
import { registerBalancerPolicy } from "./balancer";
import { invalidArgument } from "./errors";

/** The name of round robin in the mesh config: grpc-js's `round_robin`, the mesh's default policy. */
export const TYPE_NAME = "round_robin";

/** Round robin over the healthy endpoints: Cluster `lb_policy: ROUND_ROBIN` (gRFC A27). No settings. */
export const roundRobin: BalancerPolicy<undefined> = {
  parseConfig(block, field) {
    if (block !== undefined && block !== null && !isEmptyMapping(block)) {
      throw invalidArgument(field, `${TYPE_NAME} takes no settings`);
    }
    return undefined;
  },
  grpcConfig: () => ({ round_robin: {} }),
  clusterFields: () => ({ lb_policy: "ROUND_ROBIN" }),
  envoyPolicies: () => [{ "@type": "type.googleapis.com/envoy.extensions.load_balancing_policies.round_robin.v3.RoundRobin" }],
};

function isEmptyMapping(value: unknown): boolean {
  return typeof value === "object" && value !== null && !Array.isArray(value) && Object.keys(value).length === 0;
}

/** Registers round robin. */
export function setup(): void {
  registerBalancerPolicy(TYPE_NAME, roundRobin);
}

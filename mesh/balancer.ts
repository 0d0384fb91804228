import { experimental } from "@grpc/grpc-js";
import type { LoadBalancingConfig } from "@grpc/grpc-js";
/**
 * Load-balancing policies of the mesh: the interface of one, and the registry that the mesh config
 * and the control plane's xDS resource builder consult, in the shape of grpc-js's
 * load-balancer.ts (`registerLoadBalancerType`): each policy lives in a `balancer-*.ts` file that
 * ends in a `setup()` registering its TYPE_NAME, and `register()` (mesh/register.ts) calls them.
 *
 * grpc-js (and grpc-go, grpcio) execute the policies; a BalancerPolicy says how a service's mesh
 * config selects and configures one: as a service config entry for non-xDS targets, and over xDS
 * by Cluster `lb_policy` for the built-in ones (gRFC A27, A42) or Cluster `load_balancing_policy`
 * for the others (gRFC A52). protomesh's own policies (balancer-p2c-ewma.ts,
 * balancer-least-request.ts, balancer-client-health.ts) are grpc-js load balancers as well, which
 * their `setup()` registers with grpc-js's `registerLoadBalancerType`.
 */

/** One load-balancing policy the mesh config can name in `lb_policy`. */
export interface BalancerPolicy<Config = unknown> {
  /**
   * Validates the policy's own block (`lb_config` in the mesh config: plain YAML/JSON, undefined when
   * absent) into a typed value. Called when a mesh config is loaded; throws INVALID_ARGUMENT naming
   * the field below `field`, e.g. `services.catalog.lb_config.minimum_ring_size: ...`.
   */
  parseConfig(block: unknown, field: string): Config;
  /**
   * The policy as a gRPC load-balancing config (gRFC A24 `loadBalancingConfig` entry, e.g.
   * `{ "p2c_ewma": { "decay_time": "10s" } }`): what a service config carries for a non-xDS
   * target, and what the control plane puts in an xDS TypedStruct (gRFC A52) for clients.
   */
  grpcConfig(config: Config): Record<string, unknown>;
  /**
   * The Cluster fields of a policy every xDS client knows by an Envoy enum (round_robin's
   * `lb_policy: ROUND_ROBIN`, gRFC A27; ring_hash's, A42). Absent: the control plane sends
   * `load_balancing_policy` (gRFC A52) built from `envoyPolicies` and `grpcConfig`.
   */
  clusterFields?(config: Config): Record<string, unknown>;
  /**
   * Envoy's own extension messages for the policy (an Any each, e.g. Envoy's LeastRequest), listed
   * before protomesh's TypedStruct so that a grpc-go or grpcio client, which knows them, uses them.
   */
  envoyPolicies?(config: Config): Record<string, unknown>[];
  /** Fields of the service's route that the policy needs (ring_hash's hash_policy); none when absent. */
  routeFields?(config: Config): Record<string, unknown>;
}

const policies = new Map<string, BalancerPolicy>();

/** Registers `policy` under `typeName` (what `lb_policy` names); registering a name again replaces it. */
export function registerBalancerPolicy<Config>(typeName: string, policy: BalancerPolicy<Config>): void {
  policies.set(typeName, policy as BalancerPolicy);
}

/** Removes the policy registered under `typeName` (a plug-in that is unloaded; tests). */
export function unregisterBalancerPolicy(typeName: string): void {
  policies.delete(typeName);
}

/** The policy registered under `typeName`, or undefined. */
export function balancerPolicy(typeName: string): BalancerPolicy | undefined {
  return policies.get(typeName);
}

/** Names of the registered policies, in registration order. */
export function registeredBalancerPolicies(): string[] {
  return [...policies.keys()];
}

/**
 * The policy a gRPC load-balancing config list selects (gRFC A24): the first entry grpc-js has
 * registered, parsed. Entries of unregistered policies are passed over; a registered one whose
 * config is bad is an error, as is a list with no registered entry at all (where grpc-js itself
 * would quietly use pick_first). The error's message reads as a continuation of the list's field
 * name: `[0]: p2c_ewma: decay_time: must be a duration ...`, ` names no registered policy (x, y)`.
 */
export function selectGrpcPolicy(list: readonly LoadBalancingConfig[]): experimental.TypedLoadBalancingConfig {
  for (const [index, entry] of list.entries()) {
    if (!experimental.isLoadBalancerNameRegistered(Object.keys(entry)[0] ?? "")) continue;
    try {
      return experimental.parseLoadBalancingConfig(entry);
    } catch (error) {
      throw new Error(`[${index}]: ${(error as Error).message}`, { cause: error });
    }
  }
  throw new Error(` names no registered policy (${list.map((entry) => Object.keys(entry)[0]).join(", ")})`);
}

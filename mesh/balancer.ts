/**
 * Load-balancing policies of the mesh: the interface of one, and the registry that the mesh config
 * and the control plane's xDS resource builder consult, in the shape of grpc-js's
 * load-balancer.ts (`registerLoadBalancerType`): each policy lives in a `balancer-*.ts` file that
 * ends in a `setup()` registering its TYPE_NAME, and `register()` (mesh/register.ts) calls them.
 *
 * grpc-js (and grpc-go, grpcio) execute the policies; a BalancerPolicy says how a service's mesh
 * config selects and configures one over xDS: Cluster `lb_policy` for the built-in ones (gRFC A27,
 * A42), Cluster `load_balancing_policy` for custom ones (gRFC A52).
 */

/** One load-balancing policy the mesh config can name in `lb_policy`. */
export interface BalancerPolicy<Config = unknown> {
  /**
   * Validates the policy's own block (`lb_config` in the mesh config: plain YAML/JSON, undefined when
   * absent) into a typed value. Called when a mesh config is loaded; throws INVALID_ARGUMENT naming
   * the field below `field`, e.g. `services.catalog.lb_config.minimum_ring_size: ...`.
   */
  parseConfig(block: unknown, field: string): Config;
  /** The Cluster fields that select and configure the policy; called for every Cluster resource built. */
  clusterFields(config: Config): Record<string, unknown>;
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

import { status } from "@grpc/grpc-js";
import type { LoadBalancingConfig } from "@grpc/grpc-js";
import { balancerPolicy } from "../balancer";
import type { ServiceConfigJson } from "../balancer-client-health";
import { withKeepalive } from "../balancer-keepalive";
import { durationText } from "../config-fields";
import { methodPolicyOf } from "./config";
import type { HedgingPolicy, MethodPolicy, RetryPolicy, ServicePolicy } from "./config";

/**
 * A service's mesh config as a gRPC service config (gRFC A2), for clients that dial it without
 * xDS (a `dns:` or `ipv4:` target, a host:port): its load-balancing policy, client-side health
 * checking, keepalive, per-method timeouts, and retries or hedging with retry throttling, all
 * executed by grpc-js (gRFC A6). It is also the only way to hedging and retry throttling, which
 * xDS cannot carry (gRFC A44 has retries only). `protoServices` are the fully-qualified proto
 * services the client calls ("shop.catalog.v1.CatalogService"): a service config names methods by
 * them. Pass the result as createClient's `serviceConfig`. Outlier detection and circuit
 * breaking are xDS-only in grpc-js (its outlier_detection policy is there for grpc-js-xds).
 */
export function serviceConfigFor(policy: ServicePolicy, protoServices: readonly string[]): ServiceConfigJson {
  const balancer = balancerPolicy(policy.lbPolicy);
  if (!balancer) throw new Error(`load-balancing policy ${policy.lbPolicy} is not registered`);
  let lbConfig: Record<string, unknown> = balancer.grpcConfig(policy.lbConfig);
  if (policy.keepalive) lbConfig = withKeepalive(lbConfig, policy.keepalive);
  const methodConfig = [
    // Per-method entries first: grpc-js takes the first entry naming a method.
    ...[...policy.methods.keys()].map((key) => ({
      name: methodNames(key, protoServices),
      ...callPolicy(methodPolicyOf(policy, key)),
    })),
    { name: protoServices.map((service) => ({ service })), ...callPolicy(methodPolicyOf(policy, "")) },
  ];
  const config: ServiceConfigJson = { loadBalancingConfig: [lbConfig as LoadBalancingConfig], methodConfig };
  if (policy.clientHealthCheck) config.healthCheckConfig = { serviceName: policy.clientHealthCheck.serviceName };
  if (policy.retryThrottling) config.retryThrottling = { ...policy.retryThrottling };
  return config;
}

/** The service config names of a method key: its full path, or a bare name in each proto service. */
function methodNames(key: string, protoServices: readonly string[]): { service: string; method: string }[] {
  if (key.startsWith("/")) {
    const [, service, method] = key.split("/");
    return [{ service, method }];
  }
  return protoServices.map((service) => ({ service, method: key }));
}

function callPolicy(method: MethodPolicy): Record<string, unknown> {
  return {
    ...(method.timeoutMs !== undefined ? { timeout: durationText(method.timeoutMs) } : {}),
    ...(method.retry ? { retryPolicy: retryPolicyOf(method.retry) } : {}),
    ...(method.hedging ? { hedgingPolicy: hedgingPolicyOf(method.hedging) } : {}),
  };
}

/** gRFC A6's retryPolicy, with xDS's backoff defaults (gRFC A44: 25 ms base, 10× max, multiplier 2). */
function retryPolicyOf(retry: RetryPolicy): Record<string, unknown> {
  const baseMs = retry.baseIntervalMs ?? 25;
  return {
    maxAttempts: retry.numRetries + 1,
    initialBackoff: durationText(baseMs),
    maxBackoff: durationText(retry.maxIntervalMs ?? baseMs * 10),
    backoffMultiplier: 2,
    retryableStatusCodes: retry.retryOn.map(statusCodeName),
  };
}

function hedgingPolicyOf(hedging: HedgingPolicy): Record<string, unknown> {
  return {
    maxAttempts: hedging.maxAttempts,
    hedgingDelay: durationText(hedging.delayMs),
    nonFatalStatusCodes: hedging.nonFatalCodes.map(statusCodeName),
  };
}

/** An xDS status name ("deadline-exceeded") as a service config's ("DEADLINE_EXCEEDED"). */
function statusCodeName(name: string): string {
  const code = name.toUpperCase().replace(/-/g, "_");
  if (!(code in status)) throw new Error(`unknown status code ${name}`);
  return code;
}

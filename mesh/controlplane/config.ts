import * as fs from "node:fs";
import { parse as parseYaml } from "yaml";
import type { Endpoint } from "../../generated/ts/protomesh/registry/v1/registry";
import { balancerPolicy, registeredBalancerPolicies } from "../balancer";
import { TYPE_NAME as RING_HASH } from "../balancer-ring-hash";
import { TYPE_NAME as ROUND_ROBIN } from "../balancer-round-robin";
import { invalidArgument } from "../errors";
import { knownKeys, objectAt, optionalInteger, requiredInteger } from "../config-fields";
import { register } from "../register";
import { MAX_LEASE_TTL_MS, MIN_LEASE_TTL_MS } from "./registry";
import { validateEndpoint, validateServiceName } from "./registry-validation";

/** Status codes a route may retry on, as xDS names them (RetryPolicy.retry_on; gRFC A44). */
export const RETRY_ON_CODES = ["cancelled", "deadline-exceeded", "internal", "resource-exhausted", "unavailable"] as const;
/** Most retries a route may ask for: grpc-js caps a call at 5 attempts (gRFC A6). */
export const MAX_RETRIES = 4;

/**
 * Retries of a service's calls, executed by grpc-js (gRFC A6) as configured over xDS (gRFC A44).
 * Only for services whose every method is safe to repeat.
 */
export interface RetryPolicy {
  /** Status codes that are retried, from {@link RETRY_ON_CODES}. */
  retryOn: string[];
  /** Retries after the first attempt, 1 to {@link MAX_RETRIES}. */
  numRetries: number;
  /** First backoff (ms); grpc-js's default 25 ms when unset. */
  baseIntervalMs: number | undefined;
  /** Longest backoff (ms); 10 × the base when unset. */
  maxIntervalMs: number | undefined;
}

/** How clients reach one mesh service: the validated form of `services.<name>` in the mesh config. */
export interface ServicePolicy {
  /** Client-side load balancing across the service's healthy endpoints: a registered policy's name (mesh/balancer.ts). */
  lbPolicy: string;
  /** The policy's own settings (`lb_config`), as its `parseConfig` validated them. */
  lbConfig: unknown;
  /** Default deadline of a call (route max_stream_duration, gRFC A31); none when unset. */
  timeoutMs: number | undefined;
  /** Weight of each zone (locality); a zone not listed weighs the sum of its healthy endpoints' weights. */
  localityWeights: Record<string, number>;
  /** How many replicas `protomesh up` starts; the control plane itself ignores it. */
  replicas: number;
  /** Endpoints served without registration (no lease; still probed). */
  endpoints: Endpoint[];
  /** Retries of failed calls; none when unset. */
  retry: RetryPolicy | undefined;
  /**
   * Client-side health checking (gRFC A17): the grpc.health.v1 service name clients watch on every
   * endpoint they connect to, so that they stop picking one the moment it stops SERVING, before
   * the control plane's own probe and push; none when unset.
   */
  clientHealthCheck: { serviceName: string } | undefined;
}

/** The validated mesh config file. */
export interface MeshConfig {
  /** Lease TTL granted when a Register names none; unset keeps the control plane's default. */
  leaseTtlMs: number | undefined;
  /** Policy per mesh service name. */
  services: Map<string, ServicePolicy>;
}

/** The policy of a service the config does not mention. */
export const DEFAULT_SERVICE_POLICY: ServicePolicy = Object.freeze({
  lbPolicy: ROUND_ROBIN,
  lbConfig: undefined,
  timeoutMs: undefined,
  localityWeights: {},
  replicas: 1,
  endpoints: [],
  retry: undefined,
  clientHealthCheck: undefined,
});

/** The empty config: every service gets {@link DEFAULT_SERVICE_POLICY}. */
export const EMPTY_MESH_CONFIG: MeshConfig = { leaseTtlMs: undefined, services: new Map() };

/** Reads and validates a mesh config file; the error names the field (callers add the file). */
export function loadMeshConfig(file: string): MeshConfig {
  return parseMeshConfig(fs.readFileSync(file, "utf8"));
}

/**
 * Parses and validates mesh config YAML. Anything wrong is refused with INVALID_ARGUMENT naming
 * the field, e.g. `services.catalog.lb_policy: must be one of round_robin, ring_hash, pick_first, weighted_round_robin, p2c_ewma, least_request`; unknown
 * fields are refused too, so that a typo never passes silently as a default. Any registered
 * load-balancing policy may be named; its `lb_config` block is validated by the policy itself.
 */
export function parseMeshConfig(text: string): MeshConfig {
  register();
  let document: unknown;
  try {
    document = parseYaml(text);
  } catch (error) {
    throw invalidArgument("(file)", `not valid YAML: ${(error as Error).message.split("\n")[0]}`);
  }
  const root = objectAt(document ?? {}, "(root)");
  knownKeys(root, "", ["lease_ttl_ms", "services"]);
  const leaseTtlMs = optionalInteger(root.lease_ttl_ms, "lease_ttl_ms", MIN_LEASE_TTL_MS, MAX_LEASE_TTL_MS);
  const services = new Map<string, ServicePolicy>();
  const servicesNode = objectAt(root.services ?? {}, "services");
  for (const [name, value] of Object.entries(servicesNode)) {
    validateServiceName(name, `services.${name}`);
    services.set(name, servicePolicy(name, value ?? {}, `services.${name}`));
  }
  return { leaseTtlMs, services };
}

function servicePolicy(name: string, value: unknown, field: string): ServicePolicy {
  const node = objectAt(value, field);
  if (node.hash_header !== undefined) {
    throw invalidArgument(`${field}.hash_header`, "belongs to ring_hash's own settings: lb_policy: ring_hash, lb_config: { hash_header: ... }");
  }
  knownKeys(node, field, [
    "lb_policy",
    "lb_config",
    "client_health_check",
    "timeout_ms",
    "locality_weights",
    "replicas",
    "endpoints",
    "retry",
  ]);
  const lbPolicy = node.lb_policy ?? DEFAULT_SERVICE_POLICY.lbPolicy;
  const balancer = typeof lbPolicy === "string" ? balancerPolicy(lbPolicy) : undefined;
  if (balancer === undefined) {
    throw invalidArgument(`${field}.lb_policy`, `must be one of ${registeredBalancerPolicies().join(", ")}`);
  }
  const lbConfig = balancer.parseConfig(node.lb_config ?? undefined, `${field}.lb_config`);
  const localityWeights: Record<string, number> = {};
  for (const [zone, weight] of Object.entries(objectAt(node.locality_weights ?? {}, `${field}.locality_weights`))) {
    localityWeights[zone] = requiredInteger(weight, `${field}.locality_weights.${zone}`, 1, 1_000_000);
  }
  const endpointsNode = node.endpoints ?? [];
  if (!Array.isArray(endpointsNode)) throw invalidArgument(`${field}.endpoints`, "must be a list");
  const endpoints = endpointsNode.map((item: unknown, index) => {
    const endpointField = `${field}.endpoints[${index}]`;
    const entry = objectAt(item, endpointField);
    knownKeys(entry, endpointField, ["address", "port", "zone", "weight", "health_service_name"]);
    return validateEndpoint(
      {
        service: name,
        address: String(entry.address ?? ""),
        port: typeof entry.port === "number" ? entry.port : -1,
        zone: String(entry.zone ?? ""),
        weight: typeof entry.weight === "number" ? entry.weight : 0,
        metadata: {},
        healthServiceName: String(entry.health_service_name ?? ""),
      },
      endpointField,
    );
  });
  return {
    lbPolicy: lbPolicy as string,
    lbConfig,
    timeoutMs: optionalInteger(node.timeout_ms, `${field}.timeout_ms`, 1, 3_600_000),
    localityWeights,
    replicas: optionalInteger(node.replicas, `${field}.replicas`, 0, 64) ?? DEFAULT_SERVICE_POLICY.replicas,
    endpoints,
    retry: node.retry === undefined || node.retry === null ? undefined : retryPolicy(node.retry, `${field}.retry`),
    clientHealthCheck: clientHealthCheck(node.client_health_check, lbPolicy as string, `${field}.client_health_check`),
  };
}

/** `client_health_check: { service_name: "..." }`; ring_hash picks by hash, not by state, so it cannot take one. */
function clientHealthCheck(value: unknown, lbPolicy: string, field: string): ServicePolicy["clientHealthCheck"] {
  if (value === undefined || value === null) return undefined;
  const node = objectAt(value, field);
  knownKeys(node, field, ["service_name"]);
  const serviceName = node.service_name ?? "";
  if (typeof serviceName !== "string") throw invalidArgument(`${field}.service_name`, "must be a string (\"\" is the whole server)");
  if (lbPolicy === RING_HASH) throw invalidArgument(field, `is not supported with lb_policy ${RING_HASH}`);
  return { serviceName };
}

function retryPolicy(value: unknown, field: string): RetryPolicy {
  const node = objectAt(value, field);
  knownKeys(node, field, ["retry_on", "num_retries", "base_interval_ms", "max_interval_ms"]);
  const retryOn = node.retry_on;
  if (!Array.isArray(retryOn) || retryOn.length === 0) {
    throw invalidArgument(`${field}.retry_on`, `must be a non-empty list of ${RETRY_ON_CODES.join(", ")}`);
  }
  retryOn.forEach((code: unknown, index) => {
    if (typeof code !== "string" || !(RETRY_ON_CODES as readonly string[]).includes(code)) {
      throw invalidArgument(`${field}.retry_on[${index}]`, `must be one of ${RETRY_ON_CODES.join(", ")}`);
    }
  });
  const baseIntervalMs = optionalInteger(node.base_interval_ms, `${field}.base_interval_ms`, 1, 60_000);
  const maxIntervalMs = optionalInteger(node.max_interval_ms, `${field}.max_interval_ms`, 1, 600_000);
  if (baseIntervalMs !== undefined && maxIntervalMs !== undefined && maxIntervalMs < baseIntervalMs) {
    throw invalidArgument(`${field}.max_interval_ms`, "must be >= base_interval_ms");
  }
  return {
    retryOn: retryOn as string[],
    numRetries: requiredInteger(node.num_retries, `${field}.num_retries`, 1, MAX_RETRIES),
    baseIntervalMs,
    maxIntervalMs,
  };
}

/** The policy of `service` in `config`, or the default. */
export function policyFor(config: MeshConfig, service: string): ServicePolicy {
  return config.services.get(service) ?? DEFAULT_SERVICE_POLICY;
}

import * as fs from "node:fs";
import { parse as parseYaml } from "yaml";
import type { Endpoint } from "../../generated/ts/protomesh/registry/v1/registry";
import { balancerPolicy, registeredBalancerPolicies } from "../balancer";
import { TYPE_NAME as RING_HASH } from "../balancer-ring-hash";
import { TYPE_NAME as ROUND_ROBIN } from "../balancer-round-robin";
import { parseAuthorizationPolicy } from "../authorization";
import type { AuthorizationPolicy } from "../authorization";
import { invalidArgument } from "../errors";
import { knownKeys, objectAt, optionalInteger, requiredInteger } from "../config-fields";
import { register } from "../register";
import { MAX_LEASE_TTL_MS, MIN_LEASE_TTL_MS } from "./registry";
import { validateEndpoint, validateServiceName } from "./registry-validation";

/** Status codes a route may retry on, as xDS names them (RetryPolicy.retry_on; gRFC A44). */
export const RETRY_ON_CODES = ["cancelled", "deadline-exceeded", "internal", "resource-exhausted", "unavailable"] as const;
/** Most retries a route may ask for: grpc-js caps a call at 5 attempts (gRFC A6). */
export const MAX_RETRIES = 4;
/** Most attempts of a hedged call: grpc-js caps a call at 5 attempts (gRFC A6). */
export const MAX_HEDGED_ATTEMPTS = 5;

/**
 * Retries of a method's calls, executed by grpc-js (gRFC A6) as configured over xDS (gRFC A44) or
 * in a service config. Only for methods marked idempotent: a retried call may have run once already
 * (grpc-js never retries a call once response headers arrived, gRFC A6's commit, but a trailers-only
 * failure may come after the handler's work).
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

/**
 * Hedging of an idempotent method (gRFC A6): up to `maxAttempts` copies, one every `delayMs`
 * until one answers; a copy failing with a code of `nonFatalCodes` lets the next start at once.
 * Carried by service config only: xDS has no hedging policy (gRFC A44 covers retries alone).
 */
export interface HedgingPolicy {
  maxAttempts: number;
  delayMs: number;
  /** xDS-style names, from {@link RETRY_ON_CODES}. */
  nonFatalCodes: string[];
}

/** Retry throttling (gRFC A6): retries and hedges stop while failures outweigh successes. Service config only. */
export interface RetryThrottling {
  maxTokens: number;
  tokenRatio: number;
}

/** What one method of a service overrides of the service's policy (`services.<name>.methods.<Method>`). */
export interface MethodPolicy {
  /** Safe to run more than once: only then may it be retried or hedged. */
  idempotent: boolean;
  timeoutMs: number | undefined;
  retry: RetryPolicy | undefined;
  hedging: HedgingPolicy | undefined;
}

/**
 * Outlier detection (gRFC A50), run by grpc-js on each client: an endpoint whose calls fail more
 * than `failurePercentage.threshold` % of the time (over at least `requestVolume` calls in an
 * interval, with at least `minimumHosts` endpoints that busy) is ejected for `baseEjectionTimeMs` ×
 * the times it was ejected (at most `maxEjectionTimeMs`), and at most `maxEjectionPercent` % of the
 * endpoints at once.
 */
export interface OutlierDetectionPolicy {
  intervalMs: number;
  baseEjectionTimeMs: number;
  maxEjectionTimeMs: number;
  maxEjectionPercent: number;
  failurePercentage: { threshold: number; minimumHosts: number; requestVolume: number; enforcementPercentage: number } | undefined;
  successRate: { stdevFactor: number; minimumHosts: number; requestVolume: number; enforcementPercentage: number } | undefined;
}

/**
 * protomesh's outlier detection defaults, for meshes of a few replicas. A50 (and Envoy) default
 * to success-rate ejection with `minimum_hosts` 5 and failure-percentage ejection off, so a mesh
 * of 2–4 replicas never ejects anything. Here failure-percentage ejection is on with
 * `minimum_hosts` 2: a replica failing more than half of at least 10 calls in a 2 s interval is
 * ejected for 10 s (doubling on each repeat, up to 2 min), and at most a third of the endpoints
 * (one of 2 or 3) is out at once, so the mesh never ejects its majority. Success-rate ejection
 * compares an endpoint with the mean and standard deviation of the others, which needs more
 * endpoints than a small mesh has; it stays off unless configured.
 */
export const DEFAULT_OUTLIER_DETECTION: OutlierDetectionPolicy = Object.freeze({
  intervalMs: 2_000,
  baseEjectionTimeMs: 10_000,
  maxEjectionTimeMs: 120_000,
  maxEjectionPercent: 33,
  failurePercentage: Object.freeze({ threshold: 50, minimumHosts: 2, requestVolume: 10, enforcementPercentage: 100 }),
  successRate: undefined,
});

/**
 * Keepalive pings (gRFC A8) on every connection a client makes to the service's endpoints, also
 * while no call is in flight, so that a dead link is found in `timeMs` + `timeoutMs` instead of at
 * each call's deadline. Delivered with the service's load-balancing policy (balancer-keepalive.ts).
 */
export interface KeepalivePolicy {
  timeMs: number;
  timeoutMs: number;
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
  /** Every method is safe to run more than once (a method's own `idempotent` overrides it). */
  idempotent: boolean;
  /** Retries of failed calls of every idempotent method; none when unset. */
  retry: RetryPolicy | undefined;
  /** Hedging of every idempotent method (service config only); none when unset. */
  hedging: HedgingPolicy | undefined;
  /** Retry throttling (service config only); none when unset. */
  retryThrottling: RetryThrottling | undefined;
  /** Per-method overrides, keyed by method name ("GetProduct") or full path ("/pkg.Service/Method"). */
  methods: Map<string, MethodPolicy>;
  /** Outlier ejection (gRFC A50); {@link DEFAULT_OUTLIER_DETECTION} unless configured, undefined when turned off. */
  outlierDetection: OutlierDetectionPolicy | undefined;
  /** Circuit breaking (gRFC A32): most calls in flight from one client to the service; beyond, calls fail UNAVAILABLE. */
  maxRequests: number;
  /** Keepalive pings; none when unset. */
  keepalive: KeepalivePolicy | undefined;
  /**
   * Client-side health checking (gRFC A17): the grpc.health.v1 service name clients watch on every
   * endpoint they connect to, so that they stop picking one the moment it stops SERVING, before
   * the control plane's own probe and push; none when unset.
   */
  clientHealthCheck: { serviceName: string } | undefined;
  /**
   * Which callers may call which of the service's methods (mesh/authorization.ts), enforced by its
   * servers; none when unset (every caller may call every method).
   */
  authorization: AuthorizationPolicy | undefined;
}

/** The validated mesh config file. */
export interface MeshConfig {
  /** Lease TTL granted when a Register names none; unset keeps the control plane's default. */
  leaseTtlMs: number | undefined;
  /** Policy per mesh service name. */
  services: Map<string, ServicePolicy>;
}

/** Circuit breaking's default limit of calls in flight per client and service (gRFC A32, as Envoy's). */
export const DEFAULT_MAX_REQUESTS = 1024;

/** The policy of a service the config does not mention. */
export const DEFAULT_SERVICE_POLICY: ServicePolicy = Object.freeze({
  lbPolicy: ROUND_ROBIN,
  lbConfig: undefined,
  timeoutMs: undefined,
  localityWeights: {},
  replicas: 1,
  endpoints: [],
  idempotent: false,
  retry: undefined,
  hedging: undefined,
  retryThrottling: undefined,
  methods: new Map(),
  outlierDetection: DEFAULT_OUTLIER_DETECTION,
  maxRequests: DEFAULT_MAX_REQUESTS,
  keepalive: undefined,
  clientHealthCheck: undefined,
  authorization: undefined,
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
    "idempotent",
    "retry",
    "hedging",
    "retry_throttling",
    "methods",
    "outlier_detection",
    "circuit_breaker",
    "keepalive",
    "authorization",
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
  const idempotent = optionalBoolean(node.idempotent, `${field}.idempotent`) ?? false;
  const { retry, hedging } = repeatPolicies(node, idempotent, field);
  const circuitBreaker = objectAt(node.circuit_breaker ?? {}, `${field}.circuit_breaker`);
  knownKeys(circuitBreaker, `${field}.circuit_breaker`, ["max_requests"]);
  return {
    lbPolicy: lbPolicy as string,
    lbConfig,
    timeoutMs: optionalInteger(node.timeout_ms, `${field}.timeout_ms`, 1, 3_600_000),
    localityWeights,
    replicas: optionalInteger(node.replicas, `${field}.replicas`, 0, 64) ?? DEFAULT_SERVICE_POLICY.replicas,
    endpoints,
    idempotent,
    retry,
    hedging,
    retryThrottling: isAbsent(node.retry_throttling) ? undefined : retryThrottling(node.retry_throttling, `${field}.retry_throttling`),
    methods: methodPolicies(node.methods, idempotent, `${field}.methods`),
    outlierDetection: outlierDetection(node.outlier_detection, `${field}.outlier_detection`),
    maxRequests:
      optionalInteger(circuitBreaker.max_requests, `${field}.circuit_breaker.max_requests`, 1, 1_000_000) ?? DEFAULT_MAX_REQUESTS,
    keepalive: isAbsent(node.keepalive) ? undefined : keepalivePolicy(node.keepalive, `${field}.keepalive`),
    clientHealthCheck: clientHealthCheck(node.client_health_check, lbPolicy as string, `${field}.client_health_check`),
    authorization: isAbsent(node.authorization) ? undefined : parseAuthorizationPolicy(node.authorization, `${field}.authorization`),
  };
}

const NEEDS_IDEMPOTENT = "needs idempotent: true (a retried or hedged call may run more than once)";
/** A method key: a method name ("GetProduct") or a full path ("/shop.catalog.v1.CatalogService/GetProduct"). */
const METHOD_KEY = /^(\/[A-Za-z_][A-Za-z0-9_.]*\/)?[A-Za-z_][A-Za-z0-9_]*$/;

function isAbsent(value: unknown): boolean {
  return value === undefined || value === null;
}

function optionalBoolean(value: unknown, field: string): boolean | undefined {
  if (isAbsent(value)) return undefined;
  if (typeof value !== "boolean") throw invalidArgument(field, "must be true or false");
  return value;
}

function methodPolicies(value: unknown, serviceIdempotent: boolean, field: string): Map<string, MethodPolicy> {
  const methods = new Map<string, MethodPolicy>();
  for (const [key, item] of Object.entries(objectAt(value ?? {}, field))) {
    const methodField = `${field}.${key}`;
    if (!METHOD_KEY.test(key)) {
      throw invalidArgument(methodField, "must be a method name (GetProduct) or a full path (/shop.catalog.v1.CatalogService/GetProduct)");
    }
    const node = objectAt(item ?? {}, methodField);
    knownKeys(node, methodField, ["idempotent", "timeout_ms", "retry", "hedging"]);
    const idempotent = optionalBoolean(node.idempotent, `${methodField}.idempotent`) ?? serviceIdempotent;
    const { retry, hedging } = repeatPolicies(node, idempotent, methodField);
    methods.set(key, { idempotent, timeoutMs: optionalInteger(node.timeout_ms, `${methodField}.timeout_ms`, 1, 3_600_000), retry, hedging });
  }
  return methods;
}

/** The `retry` and `hedging` of a service's or a method's node: at most one, and only when idempotent. */
function repeatPolicies(node: Record<string, unknown>, idempotent: boolean, field: string): Pick<MethodPolicy, "retry" | "hedging"> {
  const retry = isAbsent(node.retry) ? undefined : retryPolicy(node.retry, `${field}.retry`);
  const hedging = isAbsent(node.hedging) ? undefined : hedgingPolicy(node.hedging, `${field}.hedging`);
  if (!idempotent && (retry || hedging)) throw invalidArgument(`${field}.${retry ? "retry" : "hedging"}`, NEEDS_IDEMPOTENT);
  if (retry && hedging) throw invalidArgument(`${field}.hedging`, "cannot be combined with retry (gRFC A6: a method has one or the other)");
  return { retry, hedging };
}

function statusNames(value: unknown, field: string): string[] {
  if (!Array.isArray(value) || value.length === 0) {
    throw invalidArgument(field, `must be a non-empty list of ${RETRY_ON_CODES.join(", ")}`);
  }
  value.forEach((code: unknown, index) => {
    if (typeof code !== "string" || !(RETRY_ON_CODES as readonly string[]).includes(code)) {
      throw invalidArgument(`${field}[${index}]`, `must be one of ${RETRY_ON_CODES.join(", ")}`);
    }
  });
  return value as string[];
}

function hedgingPolicy(value: unknown, field: string): HedgingPolicy {
  const node = objectAt(value, field);
  knownKeys(node, field, ["max_attempts", "delay_ms", "non_fatal_codes"]);
  return {
    maxAttempts: requiredInteger(node.max_attempts, `${field}.max_attempts`, 2, MAX_HEDGED_ATTEMPTS),
    delayMs: requiredInteger(node.delay_ms, `${field}.delay_ms`, 0, 60_000),
    nonFatalCodes: isAbsent(node.non_fatal_codes) ? [] : statusNames(node.non_fatal_codes, `${field}.non_fatal_codes`),
  };
}

function retryThrottling(value: unknown, field: string): RetryThrottling {
  const node = objectAt(value, field);
  knownKeys(node, field, ["max_tokens", "token_ratio"]);
  const tokenRatio = node.token_ratio;
  // gRFC A6: token_ratio > 0, at most three decimal places are used.
  if (typeof tokenRatio !== "number" || !(tokenRatio > 0) || tokenRatio > 1000) {
    throw invalidArgument(`${field}.token_ratio`, "must be a number above 0 (e.g. 0.1: ten successes earn back one retry)");
  }
  return { maxTokens: requiredInteger(node.max_tokens, `${field}.max_tokens`, 1, 1000), tokenRatio };
}

function outlierDetection(value: unknown, field: string): OutlierDetectionPolicy | undefined {
  if (value === false) return undefined;
  if (isAbsent(value)) return DEFAULT_OUTLIER_DETECTION;
  const node = objectAt(value, field);
  knownKeys(node, field, ["interval_ms", "base_ejection_time_ms", "max_ejection_time_ms", "max_ejection_percent", "failure_percentage", "success_rate"]);
  const defaults = DEFAULT_OUTLIER_DETECTION;
  const percent = (item: unknown, itemField: string, fallback: number) => optionalInteger(item, itemField, 0, 100) ?? fallback;
  const ejection = <T>(item: unknown, itemField: string, keys: string[], build: (entry: Record<string, unknown>) => T): T | undefined => {
    if (item === false) return undefined;
    const entry = objectAt(item ?? {}, itemField);
    knownKeys(entry, itemField, keys);
    return build(entry);
  };
  const failureDefaults = defaults.failurePercentage!;
  const failureField = `${field}.failure_percentage`;
  const successField = `${field}.success_rate`;
  const policy: OutlierDetectionPolicy = {
    intervalMs: optionalInteger(node.interval_ms, `${field}.interval_ms`, 100, 3_600_000) ?? defaults.intervalMs,
    baseEjectionTimeMs: optionalInteger(node.base_ejection_time_ms, `${field}.base_ejection_time_ms`, 100, 3_600_000) ?? defaults.baseEjectionTimeMs,
    maxEjectionTimeMs: optionalInteger(node.max_ejection_time_ms, `${field}.max_ejection_time_ms`, 100, 3_600_000) ?? defaults.maxEjectionTimeMs,
    maxEjectionPercent: percent(node.max_ejection_percent, `${field}.max_ejection_percent`, defaults.maxEjectionPercent),
    failurePercentage: ejection(node.failure_percentage, failureField, ["threshold", "minimum_hosts", "request_volume", "enforcement_percentage"], (entry) => ({
      threshold: percent(entry.threshold, `${failureField}.threshold`, failureDefaults.threshold),
      minimumHosts: optionalInteger(entry.minimum_hosts, `${failureField}.minimum_hosts`, 1, 10_000) ?? failureDefaults.minimumHosts,
      requestVolume: optionalInteger(entry.request_volume, `${failureField}.request_volume`, 1, 1_000_000) ?? failureDefaults.requestVolume,
      enforcementPercentage: percent(entry.enforcement_percentage, `${failureField}.enforcement_percentage`, failureDefaults.enforcementPercentage),
    })),
    successRate: isAbsent(node.success_rate)
      ? undefined
      : ejection(node.success_rate, successField, ["stdev_factor", "minimum_hosts", "request_volume", "enforcement_percentage"], (entry) => ({
          // A50's defaults: ejected below mean − 1.9 standard deviations, over 5 hosts with 100 calls each.
          stdevFactor: optionalInteger(entry.stdev_factor, `${successField}.stdev_factor`, 1, 100_000) ?? 1900,
          minimumHosts: optionalInteger(entry.minimum_hosts, `${successField}.minimum_hosts`, 1, 10_000) ?? 5,
          requestVolume: optionalInteger(entry.request_volume, `${successField}.request_volume`, 1, 1_000_000) ?? 100,
          enforcementPercentage: percent(entry.enforcement_percentage, `${successField}.enforcement_percentage`, 100),
        })),
  };
  if (policy.maxEjectionTimeMs < policy.baseEjectionTimeMs) {
    throw invalidArgument(`${field}.max_ejection_time_ms`, "must be >= base_ejection_time_ms");
  }
  return policy;
}

/**
 * protomesh's keepalive defaults, when a service has `keepalive: {}`: a ping after 10 s without
 * activity, given 5 s to be answered (gRFC A8 names 10 s as the shortest keepalive time a server
 * should have to accept by default from a client; grpc-java refuses shorter). A service may ask
 * for less when its servers permit it (grpc-js servers accept any rate; grpc-go and grpcio servers
 * must be configured to).
 */
export const DEFAULT_KEEPALIVE: KeepalivePolicy = Object.freeze({ timeMs: 10_000, timeoutMs: 5_000 });

function keepalivePolicy(value: unknown, field: string): KeepalivePolicy {
  const node = objectAt(value, field);
  knownKeys(node, field, ["time_ms", "timeout_ms"]);
  return {
    timeMs: optionalInteger(node.time_ms, `${field}.time_ms`, 100, 3_600_000) ?? DEFAULT_KEEPALIVE.timeMs,
    timeoutMs: optionalInteger(node.timeout_ms, `${field}.timeout_ms`, 100, 600_000) ?? DEFAULT_KEEPALIVE.timeoutMs,
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
  const retryOn = statusNames(node.retry_on, `${field}.retry_on`);
  const baseIntervalMs = optionalInteger(node.base_interval_ms, `${field}.base_interval_ms`, 1, 60_000);
  const maxIntervalMs = optionalInteger(node.max_interval_ms, `${field}.max_interval_ms`, 1, 600_000);
  if (baseIntervalMs !== undefined && maxIntervalMs !== undefined && maxIntervalMs < baseIntervalMs) {
    throw invalidArgument(`${field}.max_interval_ms`, "must be >= base_interval_ms");
  }
  return {
    retryOn,
    numRetries: requiredInteger(node.num_retries, `${field}.num_retries`, 1, MAX_RETRIES),
    baseIntervalMs,
    maxIntervalMs,
  };
}

/** The policy of `service` in `config`, or the default. */
export function policyFor(config: MeshConfig, service: string): ServicePolicy {
  return config.services.get(service) ?? DEFAULT_SERVICE_POLICY;
}

/**
 * What a method gets of its service's policy and its own entry (by full path, else by name): its
 * timeout, and retry or hedging when it is idempotent.
 */
export function methodPolicyOf(policy: ServicePolicy, key: string): MethodPolicy {
  const own = policy.methods.get(key);
  const idempotent = own?.idempotent ?? policy.idempotent;
  const hedging = own?.hedging ?? (own?.retry ? undefined : policy.hedging);
  const retry = own?.retry ?? (own?.hedging ? undefined : policy.retry);
  return {
    idempotent,
    timeoutMs: own?.timeoutMs ?? policy.timeoutMs,
    retry: idempotent ? retry : undefined,
    hedging: idempotent ? hedging : undefined,
  };
}

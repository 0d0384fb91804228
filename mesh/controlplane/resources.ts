import { HealthState } from "../../generated/ts/protomesh/registry/v1/registry";
import { balancerPolicy } from "../balancer";
import { TYPE_NAME as CLIENT_HEALTH } from "../balancer-client-health";
import { withKeepalive } from "../balancer-keepalive";
import { durationMessage } from "../config-fields";
import type { BalancerPolicy } from "../balancer";
import { methodPolicyOf } from "./config";
import type { MethodPolicy, OutlierDetectionPolicy, RetryPolicy, ServicePolicy } from "./config";
import { faultFilters, withFaults } from "./fault-resources";
import type { ActiveFault } from "./faults";
import type { RegistryEntry } from "./registry";
import {
  CLUSTER_LOAD_ASSIGNMENT_TYPE_URL,
  CLUSTER_TYPE_URL,
  HTTP_CONNECTION_MANAGER_TYPE_URL,
  LISTENER_TYPE_URL,
  ROUTE_CONFIGURATION_TYPE_URL,
  ROUTER_FILTER_TYPE_URL,
  TYPED_STRUCT_TYPE_URL,
  WRR_LOCALITY_TYPE_URL,
} from "./xds-protos";

/**
 * An xDS resource as a plain object in proto field names, with its type URL under "@type" (how
 * @grpc/proto-loader's protobufjs encodes a google.protobuf.Any).
 */
export type XdsResource = Record<string, unknown> & { "@type": string };

/*
 * One mesh service `s` maps onto four resources, all named `s` (each type is its own namespace):
 * Listener s (API listener, HttpConnectionManager, routes by RDS over ADS, router filter; the
 * fault filter before it while s has faults, fault-resources.ts) →
 * RouteConfiguration s (one virtual host, every path to cluster s) → Cluster s (EDS over ADS,
 * the service's LB policy) → ClusterLoadAssignment s (endpoints by zone, with health).
 * This is the shape grpc-js-xds resolves for `xds:///s` (gRFC A27; grpc-node's
 * packages/grpc-js-xds/test/framework.ts builds the same).
 */

/** The Listener a client resolves for `xds:///<service>`, with the fault filter while `faults` (the service's) are active. */
export function listenerResource(service: string, faults: readonly ActiveFault[] = []): XdsResource {
  return {
    "@type": LISTENER_TYPE_URL,
    name: service,
    api_listener: {
      api_listener: {
        "@type": HTTP_CONNECTION_MANAGER_TYPE_URL,
        rds: { route_config_name: service, config_source: { ads: {} } },
        // The router must be the last HTTP filter (gRFC A39).
        http_filters: [...faultFilters(faults), { name: "router", typed_config: { "@type": ROUTER_FILTER_TYPE_URL } }],
      },
    },
  };
}

/**
 * The RouteConfiguration: every call to `service` goes to its cluster, with the policy's timeout
 * and, when the service is idempotent, its retries. A method with an entry of its own in the
 * config gets a route of its own, matched first: by its full path, or for a bare method name by
 * any service's method of that name (a mesh service usually hosts one proto service). Hedging is
 * not in xDS (gRFC A44 carries retries only): it reaches clients by service config
 * (service-config.ts). `faults` (the service's active ones) are added as overrides of the fault
 * filter (fault-resources.ts).
 */
export function routeConfigurationResource(service: string, policy: ServicePolicy, faults: readonly ActiveFault[] = []): XdsResource {
  const routes = [...policy.methods.keys()].map((key) => ({
    match: methodMatch(key),
    route: routeAction(service, policy, methodPolicyOf(policy, key)),
  }));
  routes.push({ match: { prefix: "" }, route: routeAction(service, policy, methodPolicyOf(policy, "")) });
  return {
    "@type": ROUTE_CONFIGURATION_TYPE_URL,
    name: service,
    virtual_hosts: [withFaults({ name: service, domains: ["*"], routes }, faults)],
  };
}

/** The route match of a method key: a full path exactly, a bare name as the last path segment. */
function methodMatch(key: string): Record<string, unknown> {
  if (key.startsWith("/")) return { path: key };
  return { safe_regex: { google_re2: {}, regex: `^/[^/]+/${key}$` } };
}

function routeAction(service: string, policy: ServicePolicy, method: MethodPolicy): Record<string, unknown> {
  const route: Record<string, unknown> = { cluster: service };
  if (method.timeoutMs !== undefined) {
    // gRFC A31: max_stream_duration is the default deadline of calls that carry a longer one or none.
    route.max_stream_duration = { max_stream_duration: durationMessage(method.timeoutMs) };
  }
  Object.assign(route, balancerOf(policy).routeFields?.(policy.lbConfig));
  // gRFC A44: grpc-js-xds turns this into the call's retry policy (gRFC A6), executed by grpc-js.
  if (method.retry) route.retry_policy = retryPolicyMessage(method.retry);
  return route;
}

function retryPolicyMessage(retry: RetryPolicy): Record<string, unknown> {
  const { retryOn, numRetries, baseIntervalMs, maxIntervalMs } = retry;
  const backOff: Record<string, unknown> = {};
  if (baseIntervalMs !== undefined) backOff.base_interval = durationMessage(baseIntervalMs);
  if (maxIntervalMs !== undefined) backOff.max_interval = durationMessage(maxIntervalMs);
  return {
    retry_on: retryOn.join(","),
    num_retries: { value: numRetries },
    ...(Object.keys(backOff).length > 0 ? { retry_back_off: backOff } : {}),
  };
}

/**
 * The Cluster: endpoints from EDS over the same ADS stream, balanced by the policy, encoded as the
 * policy says, with the service's outlier detection (gRFC A50) and circuit breaker (gRFC A32).
 */
export function clusterResource(service: string, policy: ServicePolicy): XdsResource {
  return {
    "@type": CLUSTER_TYPE_URL,
    name: service,
    type: "EDS",
    eds_cluster_config: { eds_config: { ads: {} }, service_name: service },
    ...clusterPolicyFields(policy),
    ...(policy.outlierDetection ? { outlier_detection: outlierDetectionMessage(policy.outlierDetection) } : {}),
    circuit_breakers: { thresholds: [{ priority: "DEFAULT", max_requests: { value: policy.maxRequests } }] },
  };
}

/**
 * envoy.config.cluster.v3.OutlierDetection. Success-rate ejection is on in xDS unless
 * `enforcing_success_rate` is 0 (gRFC A50), failure-percentage ejection only when
 * `enforcing_failure_percentage` is above 0, so both enforcement fields are always sent.
 */
function outlierDetectionMessage(detection: OutlierDetectionPolicy): Record<string, unknown> {
  const { failurePercentage, successRate } = detection;
  const value = (n: number) => ({ value: n });
  return {
    interval: durationMessage(detection.intervalMs),
    base_ejection_time: durationMessage(detection.baseEjectionTimeMs),
    max_ejection_time: durationMessage(detection.maxEjectionTimeMs),
    max_ejection_percent: value(detection.maxEjectionPercent),
    enforcing_success_rate: value(successRate?.enforcementPercentage ?? 0),
    ...(successRate
      ? {
          success_rate_minimum_hosts: value(successRate.minimumHosts),
          success_rate_request_volume: value(successRate.requestVolume),
          success_rate_stdev_factor: value(successRate.stdevFactor),
        }
      : {}),
    enforcing_failure_percentage: value(failurePercentage?.enforcementPercentage ?? 0),
    ...(failurePercentage
      ? {
          failure_percentage_minimum_hosts: value(failurePercentage.minimumHosts),
          failure_percentage_request_volume: value(failurePercentage.requestVolume),
          failure_percentage_threshold: value(failurePercentage.threshold),
        }
      : {}),
  };
}

/**
 * How the Cluster names its policy. A policy every client knows by an Envoy enum keeps it
 * (`lb_policy: ROUND_ROBIN`); any other, and any with client-side health checking, goes as
 * `load_balancing_policy` (gRFC A52): Envoy's WrrLocality (localities weighted as for round_robin)
 * around a list of endpoint-picking policies, of which a client uses the first it knows (and NACKs
 * the Cluster, naming the problem, when it knows none). The list: protomesh's TypedStruct first (its
 * type URL ends in the grpc-js policy name, which grpc-js-xds looks up among registered policies),
 * then the policy's Envoy messages, the nearest policies that grpc-go and grpcio (and a grpc-js
 * client without protomesh's policies) know, so that every language of the mesh can call it. With client_health_check the TypedStruct
 * wraps the policy in protomesh.client_health, and with keepalive that in protomesh.keepalive;
 * clients that lack them take the plain Envoy policy.
 */
function clusterPolicyFields(policy: ServicePolicy): Record<string, unknown> {
  const balancer = balancerOf(policy);
  const isWrapped = policy.clientHealthCheck !== undefined || policy.keepalive !== undefined;
  if (balancer.clusterFields && !isWrapped) return balancer.clusterFields(policy.lbConfig);
  let grpcConfig = balancer.grpcConfig(policy.lbConfig);
  if (policy.clientHealthCheck) {
    grpcConfig = { [CLIENT_HEALTH]: { service_name: policy.clientHealthCheck.serviceName, child_policy: [grpcConfig] } };
  }
  if (policy.keepalive) grpcConfig = withKeepalive(grpcConfig, policy.keepalive);
  const picking = [typedStructOf(grpcConfig), ...(balancer.envoyPolicies?.(policy.lbConfig) ?? [])];
  return {
    load_balancing_policy: policyList([
      {
        "@type": WRR_LOCALITY_TYPE_URL,
        endpoint_picking_policy: policyList(picking),
      },
    ]),
  };
}

function policyList(messages: Record<string, unknown>[]): Record<string, unknown> {
  return {
    policies: messages.map((message) => ({
      typed_extension_config: { name: String(message["@type"]).split("/").pop(), typed_config: message },
    })),
  };
}

/** A grpc load-balancing config `{ name: {...} }` as an xds.type.v3.TypedStruct naming the policy. */
function typedStructOf(grpcConfig: Record<string, unknown>): Record<string, unknown> {
  const [name, body] = Object.entries(grpcConfig)[0];
  return { "@type": TYPED_STRUCT_TYPE_URL, type_url: `type.googleapis.com/${name}`, value: structOf(body as Record<string, unknown>) };
}

/**
 * Plain JSON as a google.protobuf.Struct. protobufjs (under proto-loader and grpc-js-xds) brings
 * its own definition of struct.proto, whose Value fields are camelCase (`stringValue`), so these
 * are too, unlike the snake_case of the envoy messages around them.
 */
function structOf(object: Record<string, unknown>): Record<string, unknown> {
  return { fields: Object.fromEntries(Object.entries(object).map(([key, value]) => [key, valueOf(value)])) };
}

function valueOf(value: unknown): Record<string, unknown> {
  if (value === null || value === undefined) return { nullValue: "NULL_VALUE" };
  if (typeof value === "number") return { numberValue: value };
  if (typeof value === "string") return { stringValue: value };
  if (typeof value === "boolean") return { boolValue: value };
  if (Array.isArray(value)) return { listValue: { values: value.map(valueOf) } };
  return { structValue: structOf(value as Record<string, unknown>) };
}

/** The registered policy a validated ServicePolicy names (validation refused any other). */
function balancerOf(policy: ServicePolicy): BalancerPolicy {
  const balancer = balancerPolicy(policy.lbPolicy);
  if (!balancer) throw new Error(`load-balancing policy ${policy.lbPolicy} is not registered`);
  return balancer;
}

/**
 * The ClusterLoadAssignment: the service's endpoints grouped by zone. Only HEALTHY endpoints are
 * used by clients (gRFC A27 uses HEALTHY and UNKNOWN; we never send UNKNOWN, so an endpoint that
 * has not answered a probe yet stays out). A zone weighs what the config says, else the sum of its
 * healthy endpoints' weights, so that every healthy replica gets a like share across zones.
 */
export function clusterLoadAssignmentResource(
  service: string,
  entries: readonly RegistryEntry[],
  policy: ServicePolicy,
): XdsResource {
  const zones = new Map<string, RegistryEntry[]>();
  for (const entry of entries) {
    const zone = entry.endpoint.zone;
    zones.set(zone, [...(zones.get(zone) ?? []), entry]);
  }
  const endpoints = [...zones.keys()].sort().map((zone) => {
    const members = zones.get(zone)!;
    const healthyWeight = members
      .filter((entry) => entry.health === HealthState.HEALTH_STATE_HEALTHY)
      .reduce((sum, entry) => sum + entry.endpoint.weight, 0);
    return {
      locality: { region: "", zone, sub_zone: "" },
      load_balancing_weight: { value: policy.localityWeights[zone] ?? Math.max(1, healthyWeight) },
      priority: 0,
      lb_endpoints: members.map((entry) => ({
        endpoint: {
          address: { socket_address: { address: entry.endpoint.address, port_value: entry.endpoint.port } },
        },
        health_status: entry.health === HealthState.HEALTH_STATE_HEALTHY ? "HEALTHY" : "UNHEALTHY",
        load_balancing_weight: { value: entry.endpoint.weight },
      })),
    };
  });
  return { "@type": CLUSTER_LOAD_ASSIGNMENT_TYPE_URL, cluster_name: service, endpoints };
}



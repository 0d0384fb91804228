import { loadSync } from "@grpc/proto-loader";
import { xdsProtoIncludeDirs } from "../admin-services";
import type { PackageDefinition } from "@grpc/proto-loader";
import { loadPackageDefinition } from "@grpc/grpc-js";
import type { ServiceDefinition } from "@grpc/grpc-js";

/** xDS v3 type URLs of the four resource types a gRPC client asks for (gRFC A27). */
export const LISTENER_TYPE_URL = "type.googleapis.com/envoy.config.listener.v3.Listener";
export const ROUTE_CONFIGURATION_TYPE_URL = "type.googleapis.com/envoy.config.route.v3.RouteConfiguration";
export const CLUSTER_TYPE_URL = "type.googleapis.com/envoy.config.cluster.v3.Cluster";
export const CLUSTER_LOAD_ASSIGNMENT_TYPE_URL = "type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment";
export const HTTP_CONNECTION_MANAGER_TYPE_URL =
  "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager";
export const ROUTER_FILTER_TYPE_URL = "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router";
export const HTTP_FAULT_TYPE_URL = "type.googleapis.com/envoy.extensions.filters.http.fault.v3.HTTPFault";
export const WRR_LOCALITY_TYPE_URL = "type.googleapis.com/envoy.extensions.load_balancing_policies.wrr_locality.v3.WrrLocality";
export const TYPED_STRUCT_TYPE_URL = "type.googleapis.com/xds.type.v3.TypedStruct";

/** The resource types served, in the order a client resolves them (LDS → RDS → CDS → EDS). */
export const XDS_TYPE_URLS: readonly string[] = [
  LISTENER_TYPE_URL,
  ROUTE_CONFIGURATION_TYPE_URL,
  CLUSTER_TYPE_URL,
  CLUSTER_LOAD_ASSIGNMENT_TYPE_URL,
];

/** Full name of the ADS service, for health and reflection. */
export const ADS_SERVICE_NAME = "envoy.service.discovery.v3.AggregatedDiscoveryService";

/** Files holding every message the control plane writes into an Any, plus ADS itself. */
const XDS_PROTO_FILES = [
  "envoy/service/discovery/v3/ads.proto",
  "envoy/config/listener/v3/listener.proto",
  "envoy/config/route/v3/route.proto",
  "envoy/config/cluster/v3/cluster.proto",
  "envoy/config/endpoint/v3/endpoint.proto",
  "envoy/extensions/filters/network/http_connection_manager/v3/http_connection_manager.proto",
  "envoy/extensions/filters/http/router/v3/router.proto",
  // The fault filter (gRFC A33), in the Listener and in route overrides.
  "envoy/extensions/filters/http/fault/v3/fault.proto",
  // Cluster load_balancing_policy (gRFC A52): the locality wrapper, Envoy's own policies, TypedStruct.
  "envoy/extensions/load_balancing_policies/wrr_locality/v3/wrr_locality.proto",
  "envoy/extensions/load_balancing_policies/round_robin/v3/round_robin.proto",
  "envoy/extensions/load_balancing_policies/pick_first/v3/pick_first.proto",
  "envoy/extensions/load_balancing_policies/least_request/v3/least_request.proto",
  "envoy/extensions/load_balancing_policies/client_side_weighted_round_robin/v3/client_side_weighted_round_robin.proto",
  "xds/type/v3/typed_struct.proto",
];

/** The loaded xDS protos: the ADS service definition, and their files for reflection. */
export interface XdsProtos {
  packageDefinition: PackageDefinition;
  adsService: ServiceDefinition;
  /** Every file proto-loader compiled, serialized FileDescriptorProtos (one array, shared). */
  fileDescriptorProtos: readonly Uint8Array[];
}

let loaded: XdsProtos | undefined;

/**
 * Loads the xDS protos once per process (about half a second). Options match grpc-js-xds' own
 * loading: field names as in the .proto, enums as strings, Any as `{"@type": ..., ...fields}`.
 */
export function loadXdsProtos(): XdsProtos {
  if (loaded) return loaded;
  const packageDefinition = loadSync(XDS_PROTO_FILES, {
    keepCase: true,
    longs: String,
    enums: String,
    defaults: true,
    oneofs: true,
    json: true,
    includeDirs: xdsProtoIncludeDirs(),
  });
  const grpcObject = loadPackageDefinition(packageDefinition) as unknown as {
    envoy: { service: { discovery: { v3: { AggregatedDiscoveryService: { service: ServiceDefinition } } } } };
  };
  const fileDescriptorProtos = [
    ...new Set(
      Object.values(packageDefinition).flatMap((entry) => (entry as { fileDescriptorProtos?: Buffer[] }).fileDescriptorProtos ?? []),
    ),
  ];
  loaded = {
    packageDefinition,
    adsService: grpcObject.envoy.service.discovery.v3.AggregatedDiscoveryService.service,
    fileDescriptorProtos,
  };
  return loaded;
}

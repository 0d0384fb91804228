import { isIP } from "node:net";
import type { Endpoint } from "../../generated/ts/protomesh/registry/v1/registry";
import { invalidArgument } from "../errors";
import { ZONE_PATTERN, isServiceName } from "../names";
/** Largest endpoint weight, as in Envoy's LbEndpoint.load_balancing_weight bound of practical use. */
export const MAX_ENDPOINT_WEIGHT = 10_000;
const MAX_HEALTH_SERVICE_NAME_LENGTH = 255;
const MAX_METADATA_ENTRIES = 32;

/** Throws INVALID_ARGUMENT naming `field` unless `name` is a valid mesh service name. */
export function validateServiceName(name: string, field: string): void {
  if (name === "") throw invalidArgument(field, "required");
  if (!isServiceName(name)) {
    throw invalidArgument(
      field,
      "must be a DNS label: lowercase letters, digits and '-', starting with a letter, at most 63 characters",
    );
  }
}

/**
 * Checks an endpoint from a Register request (or the mesh config) and returns it normalised
 * (weight 0 becomes 1). Throws INVALID_ARGUMENT naming the first bad field, prefixed by `field`.
 */
export function validateEndpoint(endpoint: Endpoint | undefined, field = "endpoint"): Endpoint {
  if (!endpoint) throw invalidArgument(field, "required");
  validateServiceName(endpoint.service, `${field}.service`);
  if (isIP(endpoint.address) === 0) {
    throw invalidArgument(`${field}.address`, "must be an IPv4 or IPv6 address");
  }
  if (!Number.isInteger(endpoint.port) || endpoint.port < 1 || endpoint.port > 65535) {
    throw invalidArgument(`${field}.port`, "must be from 1 to 65535");
  }
  if (!ZONE_PATTERN.test(endpoint.zone)) {
    throw invalidArgument(`${field}.zone`, "must be empty or a DNS label");
  }
  if (!Number.isInteger(endpoint.weight) || endpoint.weight < 0 || endpoint.weight > MAX_ENDPOINT_WEIGHT) {
    throw invalidArgument(`${field}.weight`, `must be from 0 to ${MAX_ENDPOINT_WEIGHT} (0 means 1)`);
  }
  if (endpoint.healthServiceName.length > MAX_HEALTH_SERVICE_NAME_LENGTH) {
    throw invalidArgument(`${field}.health_service_name`, `must be at most ${MAX_HEALTH_SERVICE_NAME_LENGTH} characters`);
  }
  if (Object.keys(endpoint.metadata).length > MAX_METADATA_ENTRIES) {
    throw invalidArgument(`${field}.metadata`, `must have at most ${MAX_METADATA_ENTRIES} entries`);
  }
  return { ...endpoint, weight: endpoint.weight === 0 ? 1 : endpoint.weight, metadata: { ...endpoint.metadata } };
}

/** The id of an endpoint within its service: "<address>:<port>" ("[v6]:port" for IPv6). */
export function endpointId(endpoint: Pick<Endpoint, "address" | "port">): string {
  return isIP(endpoint.address) === 6 ? `[${endpoint.address}]:${endpoint.port}` : `${endpoint.address}:${endpoint.port}`;
}

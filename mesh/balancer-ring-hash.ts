import type { BalancerPolicy } from "./balancer";
import { registerBalancerPolicy } from "./balancer";
import { knownKeys, objectAt, optionalInteger } from "./config-fields";
import { invalidArgument } from "./errors";

/** The name of ring hash in the mesh config (grpc-js-xds' `ring_hash`, gRFC A42). */
export const TYPE_NAME = "ring_hash";

/**
 * Largest ring gRFC A42 lets a config ask for (8M entries, Envoy's bound); clients cap what they
 * build lower still (grpc-js-xds at 4096 unless its channel option says otherwise).
 */
export const MAX_RING_SIZE = 8_388_608;

/** ring_hash's settings: Envoy's RingHashLbConfig field names, plus the header to hash on. */
export interface RingHashConfig {
  /** The request header hashed to pick an endpoint; unset hashes the channel, so a channel sticks to one endpoint. */
  hashHeader: string | undefined;
  /** Envoy `minimum_ring_size`; the client's default (1024) when unset. */
  minimumRingSize: number | undefined;
  /** Envoy `maximum_ring_size`; the client's default when unset. */
  maximumRingSize: number | undefined;
}

const FIELDS = ["hash_header", "minimum_ring_size", "maximum_ring_size"];

/**
 * Consistent hashing over the healthy endpoints (gRFC A42): Cluster `lb_policy: RING_HASH` with
 * `ring_hash_lb_config`, and the route's `hash_policy` saying what to hash.
 */
export const ringHash: BalancerPolicy<RingHashConfig> = {
  parseConfig(block, field) {
    const entries = objectAt(block ?? {}, field);
    knownKeys(entries, field, FIELDS);
    const hashHeader = entries.hash_header;
    if (hashHeader !== undefined && (typeof hashHeader !== "string" || !/^[a-z0-9-]+$/.test(hashHeader))) {
      throw invalidArgument(`${field}.hash_header`, "must be a lowercase header name");
    }
    const minimumRingSize = optionalInteger(entries.minimum_ring_size, `${field}.minimum_ring_size`, 1, MAX_RING_SIZE);
    const maximumRingSize = optionalInteger(entries.maximum_ring_size, `${field}.maximum_ring_size`, 1, MAX_RING_SIZE);
    if (minimumRingSize !== undefined && maximumRingSize !== undefined && maximumRingSize < minimumRingSize) {
      throw invalidArgument(`${field}.maximum_ring_size`, "must be >= minimum_ring_size");
    }
    return { hashHeader: hashHeader as string | undefined, minimumRingSize, maximumRingSize };
  },
  grpcConfig(config) {
    // grpc-js-xds' ring_hash; it hashes what the xDS route says, so it works only over xDS.
    return {
      ring_hash: {
        ...(config.minimumRingSize !== undefined ? { min_ring_size: config.minimumRingSize } : {}),
        ...(config.maximumRingSize !== undefined ? { max_ring_size: config.maximumRingSize } : {}),
      },
    };
  },
  clusterFields(config) {
    const ringConfig: Record<string, unknown> = {};
    if (config.minimumRingSize !== undefined) ringConfig.minimum_ring_size = { value: String(config.minimumRingSize) };
    if (config.maximumRingSize !== undefined) ringConfig.maximum_ring_size = { value: String(config.maximumRingSize) };
    return {
      lb_policy: "RING_HASH",
      ...(Object.keys(ringConfig).length > 0 ? { ring_hash_lb_config: ringConfig } : {}),
    };
  },
  routeFields(config) {
    // gRFC A42: the hash comes from the route; without a header, every call of a channel hashes alike.
    return {
      hash_policy: config.hashHeader
        ? [{ header: { header_name: config.hashHeader } }]
        : [{ filter_state: { key: "io.grpc.channel_id" } }],
    };
  },
};

/** Registers ring hash. */
export function setup(): void {
  registerBalancerPolicy(TYPE_NAME, ringHash);
}

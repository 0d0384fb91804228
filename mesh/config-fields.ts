import { experimental } from "@grpc/grpc-js";
import { invalidArgument, MeshError } from "./errors";

/**
 * Checks of plain config (YAML or JSON, as parsed) on its way to a typed value, shared by the mesh
 * config and the load-balancing policies' own blocks. Each throws INVALID_ARGUMENT naming `field`,
 * the path of the value in the document ("services.catalog.lb_config.minimum_ring_size").
 */

/** A mapping of a config document. */
export type Plain = Record<string, unknown>;

/** `value` as a mapping; anything else is refused. */
export function objectAt(value: unknown, field: string): Plain {
  if (typeof value !== "object" || value === null || Array.isArray(value)) {
    throw invalidArgument(field, "must be a mapping");
  }
  return value as Plain;
}

/** Refuses a key of `node` that is not one of `keys`, so that a typo never passes as a default. */
export function knownKeys(node: Plain, field: string, keys: readonly string[]): void {
  for (const key of Object.keys(node)) {
    if (!keys.includes(key)) {
      throw invalidArgument(field === "" ? key : `${field}.${key}`, `unknown field (expected one of ${keys.join(", ")})`);
    }
  }
}

/** `value` as an integer from `min` to `max`. */
export function requiredInteger(value: unknown, field: string, min: number, max: number): number {
  if (typeof value !== "number" || !Number.isInteger(value) || value < min || value > max) {
    throw invalidArgument(field, `must be an integer from ${min} to ${max}`);
  }
  return value;
}

/** Like {@link requiredInteger}, but absent (undefined or null) is undefined. */
export function optionalInteger(value: unknown, field: string, min: number, max: number): number | undefined {
  return value === undefined || value === null ? undefined : requiredInteger(value, field, min, max);
}

/**
 * `value` as a duration in ms, written as protobuf's JSON form of google.protobuf.Duration ("10s",
 * "0.250s"), the form Envoy configs and gRPC service configs use; from `minMs` to `maxMs`.
 * Absent (undefined or null) is undefined.
 */
export function optionalDuration(value: unknown, field: string, minMs: number, maxMs: number): number | undefined {
  if (value === undefined || value === null) return undefined;
  const parsed = typeof value === "string" ? experimental.parseDuration(value) : null;
  const ms = parsed ? parsed.seconds * 1000 + parsed.nanos / 1e6 : Number.NaN;
  if (!(ms >= minMs && ms <= maxMs)) {
    throw invalidArgument(field, `must be a duration such as "10s" or "0.250s", from ${minMs / 1000}s to ${maxMs / 1000}s`);
  }
  return ms;
}

/** `ms` in protobuf's JSON form of a Duration ("0.250s"), for a config that is handed on. */
export function durationText(ms: number): string {
  return `${Number((ms / 1000).toFixed(9))}s`;
}

/** `ms` as a google.protobuf.Duration message in proto field names, for an xDS resource. */
export function durationMessage(ms: number): { seconds: string; nanos: number } {
  return { seconds: String(Math.floor(ms / 1000)), nanos: Math.round((ms % 1000) * 1_000_000) };
}

/**
 * Runs the parse of a grpc-js policy config (`createFromJson`), the policy's name as the field
 * root. grpc-js prefixes what a parse throws with the policy name, so the error thrown here is the
 * rest: grpc-js then says `p2c_ewma: decay_time: must be a duration ...`.
 */
export function parseGrpcPolicyConfig<T>(typeName: string, parse: (field: string) => T): T {
  try {
    return parse(typeName);
  } catch (error) {
    if (!(error instanceof MeshError)) throw error;
    const details = error.details;
    for (const prefix of [`${typeName}.`, `${typeName}: `]) {
      if (details.startsWith(prefix)) throw new Error(details.slice(prefix.length), { cause: error });
    }
    throw new Error(details, { cause: error });
  }
}

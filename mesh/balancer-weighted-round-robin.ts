import type { BalancerPolicy } from "./balancer";
import { registerBalancerPolicy } from "./balancer";
import { durationMessage, durationText, knownKeys, objectAt, optionalDuration } from "./config-fields";
import { invalidArgument } from "./errors";

/**
 * The name of weighted round robin in the mesh config: grpc-js's own `weighted_round_robin`
 * (gRFC A58), which weighs each endpoint by the ORCA load reports servers made with
 * `createServer` send (mesh/load-report.ts): weight = qps / (utilization + eps/qps × penalty).
 */
export const TYPE_NAME = "weighted_round_robin";

/** The settings, Envoy ClientSideWeightedRoundRobin's field names; unset ones keep grpc-js's defaults (A58) but one. */
export interface WeightedRoundRobinSettings {
  /**
   * Out-of-band reports (an ORCA stream per endpoint) instead of per-call trailers. A58 and Envoy
   * default to false; protomesh to true, because grpc-js 1.14.7 re-reads the ORCA protos from disk
   * for every per-call report it parses (orca.ts `loadOrcaProto` never keeps what it loaded),
   * milliseconds per call, where an out-of-band stream's reports are decoded by a loaded client.
   */
  enableOobLoadReport: boolean;
  oobReportingPeriodMs?: number;
  blackoutPeriodMs?: number;
  weightExpirationPeriodMs?: number;
  weightUpdatePeriodMs?: number;
  errorUtilizationPenalty?: number;
}

/** The duration fields: Envoy's name (the mesh config's), the settings key, grpc-js's name. */
const DURATIONS = [
  ["oob_reporting_period", "oobReportingPeriodMs", "oob_load_reporting_period"],
  ["blackout_period", "blackoutPeriodMs", "blackout_period"],
  ["weight_expiration_period", "weightExpirationPeriodMs", "weight_expiration_period"],
  ["weight_update_period", "weightUpdatePeriodMs", "weight_update_period"],
] as const;

const HOUR_MS = 3_600_000;

/** weighted_round_robin in the mesh config; grpc-js executes it, this only validates and encodes its config. */
export const weightedRoundRobin: BalancerPolicy<WeightedRoundRobinSettings> = {
  parseConfig(block, field) {
    const entries = objectAt(block ?? {}, field);
    knownKeys(entries, field, ["enable_oob_load_report", "error_utilization_penalty", ...DURATIONS.map(([name]) => name)]);
    const settings: WeightedRoundRobinSettings = { enableOobLoadReport: true };
    if (entries.enable_oob_load_report !== undefined) {
      if (typeof entries.enable_oob_load_report !== "boolean") {
        throw invalidArgument(`${field}.enable_oob_load_report`, "must be true or false");
      }
      settings.enableOobLoadReport = entries.enable_oob_load_report;
    }
    if (entries.error_utilization_penalty !== undefined) {
      const penalty = entries.error_utilization_penalty;
      if (typeof penalty !== "number" || !(penalty >= 0)) {
        throw invalidArgument(`${field}.error_utilization_penalty`, "must be a number >= 0");
      }
      settings.errorUtilizationPenalty = penalty;
    }
    for (const [name, key] of DURATIONS) {
      // A58 floors weight_update_period at 100 ms; a shorter one is refused rather than silently raised.
      const minMs = name === "weight_update_period" ? 100 : 0;
      const ms = optionalDuration(entries[name], `${field}.${name}`, minMs, HOUR_MS);
      if (ms !== undefined) settings[key] = ms;
    }
    return settings;
  },
  grpcConfig(settings) {
    const config: Record<string, unknown> = {};
    config.enable_oob_load_report = settings.enableOobLoadReport;
    if (settings.errorUtilizationPenalty !== undefined) config.error_utilization_penalty = settings.errorUtilizationPenalty;
    // grpc-js spells Envoy's oob_reporting_period as oob_load_reporting_period.
    for (const [, key, grpcName] of DURATIONS) {
      const ms = settings[key];
      if (ms !== undefined) config[grpcName] = durationText(ms);
    }
    return { [TYPE_NAME]: config };
  },
  envoyPolicies(settings) {
    const message: Record<string, unknown> = {
      "@type":
        "type.googleapis.com/envoy.extensions.load_balancing_policies.client_side_weighted_round_robin.v3.ClientSideWeightedRoundRobin",
    };
    message.enable_oob_load_report = { value: settings.enableOobLoadReport };
    if (settings.errorUtilizationPenalty !== undefined) message.error_utilization_penalty = { value: settings.errorUtilizationPenalty };
    for (const [name, key] of DURATIONS) {
      const ms = settings[key];
      if (ms !== undefined) message[name] = durationMessage(ms);
    }
    return [message];
  },
};

/** Registers weighted_round_robin with the mesh config (grpc-js registers the balancer itself). */
export function setup(): void {
  registerBalancerPolicy(TYPE_NAME, weightedRoundRobin);
}

import { experimental } from "@grpc/grpc-js";
import type { BalancerPolicy } from "./balancer";
import { registerBalancerPolicy } from "./balancer";
import { nearestEnvoyPolicies } from "./balancer-least-request";
import { EndpointListBalancer, inFlightOf, trackedPick } from "./balancer-endpoint-list";
import type { EndpointPolicy, InFlight, ReadyEndpoint } from "./balancer-endpoint-list";
import { durationText, knownKeys, objectAt, optionalDuration, parseGrpcPolicyConfig } from "./config-fields";
import { invalidArgument, isServerFailure } from "./errors";
import { PeakEwma } from "./peak-ewma";

/**
 * p2c_ewma: power of two choices over peak-sensitive EWMA latency, for grpc-js.
 *
 * Each pick draws two distinct READY endpoints at random and takes the one of lower cost,
 * cost = peak EWMA of its latency × (calls in flight + 1): Mitzenmacher's "power of two choices"
 * (2001) with Finagle's PeakEwma load (twitter/finagle `Balancers.p2cPeakEwma`), the design
 * linkerd2-proxy ships through tower (`tower::balance::p2c` + `tower::load::PeakEwma`) and Envoy's
 * contrib `envoy.load_balancing_policies.peak_ewma` (Cost = RTT_peak_ewma × (active_requests + 1)).
 * A replica that turns slow is avoided from its first slow answer, and before that by its growing
 * count of calls in flight; the estimate then decays, so it is probed again (see peak-ewma.ts).
 *
 * The config takes Envoy PeakEwma's field names where they mean the same here:
 * - `decay_time` (Envoy, Finagle `decayTime`): τ of the EWMA, default 10 s as both.
 * - `default_rtt` (Envoy, tower `default_rtt`): latency assumed for an endpoint not yet measured,
 *   default 10 ms as Envoy.
 * - `error_penalty` (ours; Envoy leaves failures to outlier detection): a call that fails with a
 *   server fault (errors.ts `isServerFailure`) counts as taking at least this long, default 1 s,
 *   so that a replica failing fast does not look like the fastest one and draw every call (the
 *   "black hole" go-zero's p2c guards against by dividing by its success rate).
 * Envoy's `aggregation_interval`, `max_samples_per_host` and `penalty_value` have no meaning in
 * one event loop that folds each sample in as its call ends; they are refused by name, not ignored.
 */

/** The name of the policy, in grpc-js and in the mesh config. */
export const TYPE_NAME = "p2c_ewma";

/** Finagle's and Envoy's default decay time. */
export const DEFAULT_DECAY_MS = 10_000;
/** Envoy PeakEwma's default RTT of an endpoint not yet measured. */
export const DEFAULT_RTT_MS = 10;
/** The least a server-fault call counts as taking. */
export const DEFAULT_ERROR_PENALTY_MS = 1_000;

const FIELDS = ["decay_time", "default_rtt", "error_penalty"];
/** Envoy PeakEwma fields with no meaning here, and why (refused by name rather than ignored). */
const ENVOY_ONLY_FIELDS: Record<string, string> = {
  aggregation_interval: "tunes Envoy's cross-thread aggregation; one event loop has none",
  max_samples_per_host: "bounds Envoy's per-thread sample buffers; samples are folded in as calls end",
  penalty_value: "is Envoy's cost of an unmeasured host; here an unmeasured endpoint costs default_rtt, as in tower",
};
const MAX_DURATION_MS = 3_600_000;

/** p2c_ewma's settings, validated. */
export interface P2cEwmaSettings {
  decayMs: number;
  defaultRttMs: number;
  errorPenaltyMs: number;
}

/** Validates a p2c_ewma block (plain JSON: service config, mesh config, xDS TypedStruct); errors name `field`. */
export function parseP2cEwmaSettings(block: unknown, field: string): P2cEwmaSettings {
  const entries = objectAt(block ?? {}, field);
  for (const [key, reason] of Object.entries(ENVOY_ONLY_FIELDS)) {
    if (key in entries) throw invalidArgument(`${field}.${key}`, `not a p2c_ewma setting: it ${reason}`);
  }
  knownKeys(entries, field, FIELDS);
  return {
    decayMs: optionalDuration(entries.decay_time, `${field}.decay_time`, 1, MAX_DURATION_MS) ?? DEFAULT_DECAY_MS,
    defaultRttMs: optionalDuration(entries.default_rtt, `${field}.default_rtt`, 0.001, MAX_DURATION_MS) ?? DEFAULT_RTT_MS,
    errorPenaltyMs: optionalDuration(entries.error_penalty, `${field}.error_penalty`, 0, MAX_DURATION_MS) ?? DEFAULT_ERROR_PENALTY_MS,
  };
}

/** The settings as a grpc service-config block (`{"p2c_ewma": {...}}`'s inside). */
export function p2cEwmaJson(settings: P2cEwmaSettings): Record<string, string> {
  return {
    decay_time: durationText(settings.decayMs),
    default_rtt: durationText(settings.defaultRttMs),
    error_penalty: durationText(settings.errorPenaltyMs),
  };
}

/** The grpc-js config object of p2c_ewma (what `registerLoadBalancerType` parses a config into). */
export class P2cEwmaConfig implements experimental.TypedLoadBalancingConfig {
  constructor(readonly settings: P2cEwmaSettings) {}

  getLoadBalancerName(): string {
    return TYPE_NAME;
  }

  toJsonObject(): object {
    return { [TYPE_NAME]: p2cEwmaJson(this.settings) };
  }

  static createFromJson(block: unknown): P2cEwmaConfig {
    return new P2cEwmaConfig(parseGrpcPolicyConfig(TYPE_NAME, (field) => parseP2cEwmaSettings(block, field)));
  }
}

/** What p2c_ewma keeps per endpoint: calls in flight and the latency estimate. */
export class EndpointLoad implements InFlight {
  outstanding = 0;
  picked = 0;
  readonly latency: PeakEwma;

  constructor(settings: P2cEwmaSettings, nowMs: number) {
    this.latency = new PeakEwma(settings.decayMs, settings.defaultRttMs, nowMs);
  }

  /** The endpoint's cost at `nowMs`: latency estimate × (calls in flight + 1). */
  cost(nowMs: number): number {
    return this.latency.estimate(nowMs) * (inFlightOf(this) + 1);
  }
}

/** Monotonic time (ms) and randomness in [0, 1), injected so that a test can pin both. */
export interface PickerSources {
  now: () => number;
  random: () => number;
}

const SYSTEM_SOURCES: PickerSources = { now: () => performance.now(), random: Math.random };

/**
 * The p2c_ewma picker over the READY endpoints: two distinct draws (tower's p2c draws two distinct
 * indices the same way), the cheaper one wins, ties go to the first drawn. The pick counts the
 * call in flight when it starts and feeds its latency to the estimate when it ends.
 */
export function p2cEwmaPicker(
  ready: readonly ReadyEndpoint<EndpointLoad>[],
  settings: P2cEwmaSettings,
  sources: PickerSources = SYSTEM_SOURCES,
): experimental.Picker {
  return {
    pick(args) {
      let chosen = ready[0];
      if (ready.length > 1) {
        const first = Math.floor(sources.random() * ready.length);
        let second = Math.floor(sources.random() * (ready.length - 1));
        if (second >= first) second += 1;
        const nowMs = sources.now();
        chosen = ready[second].state.cost(nowMs) < ready[first].state.cost(nowMs) ? ready[second] : ready[first];
      }
      return withLoadTracking(chosen.picker.pick(args), chosen.state, settings, sources.now);
    },
  };
}

function withLoadTracking(
  result: experimental.PickResult,
  load: EndpointLoad,
  settings: P2cEwmaSettings,
  now: () => number,
): experimental.PickResult {
  let startedMs = 0;
  return trackedPick(
    result,
    load,
    () => {
      startedMs = now();
    },
    (code) => {
      const endedMs = now();
      const rttMs = endedMs - startedMs;
      load.latency.observe(isServerFailure(code) ? Math.max(rttMs, settings.errorPenaltyMs) : rttMs, endedMs);
    },
  );
}

/** p2c_ewma as an endpoint-list policy, with the given time and randomness. */
export function p2cEwmaPolicy(sources: PickerSources = SYSTEM_SOURCES): EndpointPolicy<P2cEwmaConfig, EndpointLoad> {
  return {
    typeName: TYPE_NAME,
    isConfig: (config): config is P2cEwmaConfig => config instanceof P2cEwmaConfig,
    newState: (config) => new EndpointLoad(config.settings, sources.now()),
    pickerFor: (ready, config) => p2cEwmaPicker(ready, config.settings, sources),
  };
}

/** The grpc-js load balancer of p2c_ewma. */
export class P2cEwmaBalancer extends EndpointListBalancer<P2cEwmaConfig, EndpointLoad> {
  constructor(helper: experimental.ChannelControlHelper) {
    super(helper, p2cEwmaPolicy());
  }
}

/** p2c_ewma in the mesh config: `lb_policy: p2c_ewma`, `lb_config` with the fields above. */
export const p2cEwma: BalancerPolicy<P2cEwmaSettings> = {
  parseConfig: (block, field) => parseP2cEwmaSettings(block, field),
  grpcConfig: (settings) => ({ [TYPE_NAME]: p2cEwmaJson(settings) }),
  // Clients without p2c_ewma (grpc-go, grpcio) take power of two choices over requests in flight, else round robin.
  envoyPolicies: () => nearestEnvoyPolicies(2),
};

/** Registers p2c_ewma with grpc-js and with the mesh config. */
export function setup(): void {
  experimental.registerLoadBalancerType(TYPE_NAME, P2cEwmaBalancer, P2cEwmaConfig);
  registerBalancerPolicy(TYPE_NAME, p2cEwma);
}

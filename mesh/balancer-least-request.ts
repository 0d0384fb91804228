import { experimental } from "@grpc/grpc-js";
import type { BalancerPolicy } from "./balancer";
import { registerBalancerPolicy } from "./balancer";
import { EndpointListBalancer, inFlightOf, trackedPick } from "./balancer-endpoint-list";
import type { InFlight } from "./balancer-endpoint-list";
import type { EndpointPolicy, ReadyEndpoint } from "./balancer-endpoint-list";
import { knownKeys, objectAt, optionalInteger, parseGrpcPolicyConfig } from "./config-fields";

/**
 * least_request for grpc-js, per gRFC A48 (xDS least_request LB policy): each pick draws
 * `choice_count` READY endpoints at random, with replacement as Envoy's LeastRequest does, and
 * takes the one with the fewest calls in flight (ties to the first drawn). A48 bounds the count:
 * below 2 is an invalid config, above 10 is capped at 10. Endpoint weights (Envoy's weighted
 * variant, which A48 leaves out) are not used.
 */

/** The name of the policy, in grpc-js and in the mesh config. */
export const TYPE_NAME = "least_request";
/** gRFC A48's default and bounds of `choice_count`. */
export const DEFAULT_CHOICE_COUNT = 2;
export const MIN_CHOICE_COUNT = 2;
export const MAX_CHOICE_COUNT = 10;

/** least_request's settings, validated. */
export interface LeastRequestSettings {
  choiceCount: number;
}

/**
 * Reads a grpc-js config block: `choiceCount` (the service-config spelling grpc-go reads) or
 * `choice_count` (Envoy's, the mesh's); over 10 is capped as A48 says, under 2 refused.
 */
function parseGrpcBlock(block: unknown, field: string): LeastRequestSettings {
  const entries = objectAt(block ?? {}, field);
  knownKeys(entries, field, ["choiceCount", "choice_count"]);
  const raw = entries.choiceCount ?? entries.choice_count;
  const count = optionalInteger(raw, `${field}.choiceCount`, MIN_CHOICE_COUNT, Number.MAX_SAFE_INTEGER);
  return { choiceCount: Math.min(count ?? DEFAULT_CHOICE_COUNT, MAX_CHOICE_COUNT) };
}

/** The grpc-js config object of least_request. */
export class LeastRequestConfig implements experimental.TypedLoadBalancingConfig {
  constructor(readonly settings: LeastRequestSettings) {}

  getLoadBalancerName(): string {
    return TYPE_NAME;
  }

  toJsonObject(): object {
    return { [TYPE_NAME]: { choiceCount: this.settings.choiceCount } };
  }

  static createFromJson(block: unknown): LeastRequestConfig {
    return new LeastRequestConfig(parseGrpcPolicyConfig(TYPE_NAME, (field) => parseGrpcBlock(block, field)));
  }
}

export type { InFlight };

/** The least_request picker over the READY endpoints; `random` in [0, 1), injected for tests. */
export function leastRequestPicker(
  ready: readonly ReadyEndpoint<InFlight>[],
  settings: LeastRequestSettings,
  random: () => number = Math.random,
): experimental.Picker {
  return {
    pick(args) {
      let chosen = ready[Math.floor(random() * ready.length)];
      for (let draw = 1; draw < settings.choiceCount; draw += 1) {
        const candidate = ready[Math.floor(random() * ready.length)];
        if (inFlightOf(candidate.state) < inFlightOf(chosen.state)) chosen = candidate;
      }
      return trackedPick(chosen.picker.pick(args), chosen.state);
    },
  };
}

/** least_request as an endpoint-list policy. */
export function leastRequestPolicy(random: () => number = Math.random): EndpointPolicy<LeastRequestConfig, InFlight> {
  return {
    typeName: TYPE_NAME,
    isConfig: (config): config is LeastRequestConfig => config instanceof LeastRequestConfig,
    newState: () => ({ outstanding: 0 }),
    pickerFor: (ready, config) => leastRequestPicker(ready, config.settings, random),
  };
}

/** The grpc-js load balancer of least_request. */
export class LeastRequestBalancer extends EndpointListBalancer<LeastRequestConfig, InFlight> {
  constructor(helper: experimental.ChannelControlHelper) {
    super(helper, leastRequestPolicy());
  }
}

/** least_request in the mesh config: `lb_config: { choice_count: 2..10 }` (a value out of range is refused, not capped). */
export const leastRequest: BalancerPolicy<LeastRequestSettings> = {
  parseConfig(block, field) {
    const entries = objectAt(block ?? {}, field);
    knownKeys(entries, field, ["choice_count"]);
    const count = optionalInteger(entries.choice_count, `${field}.choice_count`, MIN_CHOICE_COUNT, MAX_CHOICE_COUNT);
    return { choiceCount: count ?? DEFAULT_CHOICE_COUNT };
  },
  grpcConfig: (settings) => ({ [TYPE_NAME]: { choiceCount: settings.choiceCount } }),
  envoyPolicies: (settings) => nearestEnvoyPolicies(settings.choiceCount),
};

/**
 * What a client without protomesh's policies takes instead, in the order it looks (gRFC A52: the
 * first it knows): Envoy's LeastRequest (A48), which grpc-go and grpc-java implement, else
 * RoundRobin, which every gRPC knows (grpcio, and a grpc-js client that did not register
 * protomesh's policies). A Go or Python service of the mesh calls a p2c_ewma or least_request
 * service with these.
 */
export function nearestEnvoyPolicies(choiceCount: number): Record<string, unknown>[] {
  return [
    { "@type": "type.googleapis.com/envoy.extensions.load_balancing_policies.least_request.v3.LeastRequest", choice_count: { value: choiceCount } },
    { "@type": "type.googleapis.com/envoy.extensions.load_balancing_policies.round_robin.v3.RoundRobin" },
  ];
}

/** Registers least_request with grpc-js and with the mesh config. */
export function setup(): void {
  experimental.registerLoadBalancerType(TYPE_NAME, LeastRequestBalancer, LeastRequestConfig);
  registerBalancerPolicy(TYPE_NAME, leastRequest);
}

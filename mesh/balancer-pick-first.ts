import type { BalancerPolicy } from "./balancer";
import { registerBalancerPolicy } from "./balancer";
import { knownKeys, objectAt } from "./config-fields";
import { invalidArgument } from "./errors";

/** The name of pick_first in the mesh config: grpc-js's own `pick_first` (gRFC A62). */
export const TYPE_NAME = "pick_first";

/** pick_first's one setting, Envoy PickFirst's `shuffle_address_list`. */
export interface PickFirstSettings {
  /** Shuffle the endpoints before connecting, so that clients spread over replicas (A62); default false, as Envoy. */
  shuffleAddressList: boolean;
}

/**
 * One connection, to the first endpoint that answers (grpc-js's `pick_first`, gRPC's default).
 * Over xDS it goes as Envoy's PickFirst extension (grpc-go, grpcio) and then as a TypedStruct
 * naming grpc-js's `pick_first`, which grpc-js-xds reads (its PickFirst reader is behind an
 * environment flag).
 */
export const pickFirst: BalancerPolicy<PickFirstSettings> = {
  parseConfig(block, field) {
    const entries = objectAt(block ?? {}, field);
    knownKeys(entries, field, ["shuffle_address_list"]);
    const shuffle = entries.shuffle_address_list ?? false;
    if (typeof shuffle !== "boolean") throw invalidArgument(`${field}.shuffle_address_list`, "must be true or false");
    return { shuffleAddressList: shuffle };
  },
  grpcConfig: (settings) => ({ pick_first: { shuffleAddressList: settings.shuffleAddressList } }),
  envoyPolicies: (settings) => [
    {
      "@type": "type.googleapis.com/envoy.extensions.load_balancing_policies.pick_first.v3.PickFirst",
      shuffle_address_list: settings.shuffleAddressList,
    },
  ],
};

/** Registers pick_first with the mesh config (grpc-js registers the balancer itself). */
export function setup(): void {
  registerBalancerPolicy(TYPE_NAME, pickFirst);
}

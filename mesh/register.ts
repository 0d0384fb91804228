import { setup as setupClientHealth } from "./balancer-client-health";
import { setup as setupKeepalive } from "./balancer-keepalive";
import { setup as setupLeastRequest } from "./balancer-least-request";
import { setup as setupP2cEwma } from "./balancer-p2c-ewma";
import { setup as setupPickFirst } from "./balancer-pick-first";
import { setup as setupRingHash } from "./balancer-ring-hash";
import { setup as setupRoundRobin } from "./balancer-round-robin";
import { setup as setupWeightedRoundRobin } from "./balancer-weighted-round-robin";

let arePoliciesRegistered = false;
let isXdsRegisteredNow = false;

/**
 * Registers protomesh's pluggable parts: the load-balancing policies of the mesh config (see
 * mesh/balancer.ts), protomesh's own grpc-js load balancers (p2c_ewma, least_request,
 * protomesh.client_health, protomesh.keepalive) and, with `xds`, grpc-js-xds' `xds:` resolver and balancers.
 * Explicit and idempotent: importing a protomesh module registers nothing. `createClient` calls it
 * with `xds` for an `xds:` target; the control plane calls it before it reads a mesh config.
 * Loading grpc-js-xds takes most of a second (it parses the envoy protos), so it happens here, once,
 * when first asked for.
 */
export function register(options: { xds?: boolean } = {}): void {
  if (!arePoliciesRegistered) {
    setupRoundRobin();
    setupRingHash();
    setupPickFirst();
    setupWeightedRoundRobin();
    setupP2cEwma();
    setupLeastRequest();
    setupClientHealth();
    setupKeepalive();
    arePoliciesRegistered = true;
  }
  if (options.xds && !isXdsRegisteredNow) {
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    const xds = require("@grpc/grpc-js-xds") as typeof import("@grpc/grpc-js-xds");
    xds.register();
    isXdsRegisteredNow = true;
  }
}

/** True once grpc-js-xds is loaded and registered (a client dialled an `xds:` target, or `register({ xds: true })`). */
export function isXdsRegistered(): boolean {
  return isXdsRegisteredNow;
}

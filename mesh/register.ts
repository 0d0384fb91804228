import { setup as setupRingHash } from "./balancer-ring-hash";
import { setup as setupRoundRobin } from "./balancer-round-robin";

let isXdsRegistered = false;

/**
 * Registers protomesh's pluggable parts: the load-balancing policies of the mesh config (see
 * mesh/balancer.ts) and, with `xds`, grpc-js-xds' `xds:` resolver and balancers with grpc-js.
 * Explicit and idempotent: importing a protomesh module registers nothing. `createClient` calls it
 * with `xds` for an `xds:` target; the control plane calls it before it reads a mesh config.
 * Loading grpc-js-xds takes most of a second (it parses the envoy protos), so it happens here, once,
 * when first asked for.
 */
export function register(options: { xds?: boolean } = {}): void {
  setupRoundRobin();
  setupRingHash();
  if (options.xds && !isXdsRegistered) {
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    const xds = require("@grpc/grpc-js-xds") as typeof import("@grpc/grpc-js-xds");
    xds.register();
    isXdsRegistered = true;
  }
}

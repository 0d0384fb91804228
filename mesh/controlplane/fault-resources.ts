import { durationMessage } from "../config-fields";
import type { ActiveFault } from "./faults";
import { HTTP_FAULT_TYPE_URL } from "./xds-protos";

/*
 * How faults reach clients (gRFC A33): the Listener of a service with faults carries the xDS
 * fault filter before the router (which stays last, gRFC A39), configured to do nothing; the
 * faults themselves are route overrides of that filter (typed_per_filter_config, keyed by the
 * filter's name). A method's fault is on a route matching that method's path exactly; a
 * service-wide fault is on every other route (today the one catch-all), so a method with a fault
 * of its own gets that one: the most specific applies. Without faults nothing is added, and the
 * resources are byte for byte what they were.
 *
 * Why not the virtual host's override for a service-wide fault: grpc-js-xds 1.14 compares a new
 * resource with the one it has over the keys of the old one only (deepEqual in
 * xds-resource-type.js), so an entry added to an empty typed_per_filter_config passes for no
 * change and is never applied. It also applies a changed Listener only with the next
 * RouteConfiguration. So every faulted route is named after its fault ("fault <id>"; clients
 * ignore route names): any change of faults changes a field clients do compare, and the ADS
 * server pushes the Listener before the RouteConfiguration (xds-server.ts `update`).
 */

/** Name of the fault filter in the Listener; the overrides name it. */
export const FAULT_FILTER_NAME = "envoy.filters.http.fault";

/** A route as resources.ts writes it, proto field names. */
export interface XdsRoute {
  match: { prefix?: string; path?: string } & Record<string, unknown>;
  typed_per_filter_config?: Record<string, unknown>;
  [field: string]: unknown;
}

/** A virtual host as resources.ts writes it. */
export interface XdsVirtualHost {
  routes: XdsRoute[];
  [field: string]: unknown;
}

/** The HTTP filters a service's Listener has before its router: the fault filter when it has faults. */
export function faultFilters(faults: readonly ActiveFault[]): Record<string, unknown>[] {
  // An HTTPFault with neither delay nor abort: a route without an override is not faulted.
  return faults.length === 0 ? [] : [{ name: FAULT_FILTER_NAME, typed_config: { "@type": HTTP_FAULT_TYPE_URL } }];
}

/**
 * `virtualHost` with `faults` (its service's) as route overrides. A method's fault goes on the
 * route matching its path exactly: the one already there when there is one (a per-method route
 * of the config), else one added just before the first route that would take the method's calls,
 * with that route's action, so the call is routed as before and only faulted in addition. A
 * service-wide fault goes on every other route. No faults: `virtualHost` unchanged.
 */
export function withFaults(virtualHost: XdsVirtualHost, faults: readonly ActiveFault[]): XdsVirtualHost {
  if (faults.length === 0) return virtualHost;
  const routes: { route: XdsRoute; fault: ActiveFault | undefined }[] = virtualHost.routes.map((route) => ({ route, fault: undefined }));
  for (const fault of faults.filter((candidate) => candidate.method !== "")) {
    const path = `/${fault.method}`;
    const at = routes.findIndex(({ route }) => takes(route, path));
    if (at === -1) continue; // no route takes the method's calls: nothing to fault
    const taking = routes[at].route;
    if (taking.match.path === path) routes[at].fault = fault;
    else routes.splice(at, 0, { route: { ...taking, match: { path } }, fault });
  }
  const serviceWide = faults.find((fault) => fault.method === "");
  return {
    ...virtualHost,
    routes: routes.map(({ route, fault }) => {
      const applied = fault ?? serviceWide;
      return applied ? faulted(route, applied) : route;
    }),
  };
}

/**
 * True when `route` takes every call to `path`: an exact path, a prefix, or the safe_regex of a
 * per-method route for a bare method name (resources.ts writes `^/[^/]+/Name$`, which reads the
 * same in RE2 and JavaScript), without other conditions.
 */
function takes(route: XdsRoute, path: string): boolean {
  const { match } = route;
  if (Object.keys(match).some((key) => key !== "path" && key !== "prefix" && key !== "safe_regex")) return false;
  const regex = (match.safe_regex as { regex?: unknown } | undefined)?.regex;
  if (typeof regex === "string") return new RegExp(regex).test(path);
  return match.path === path || (match.path === undefined && typeof match.prefix === "string" && path.startsWith(match.prefix));
}

/** `route` with `fault` as its override of the fault filter, and named after it. */
function faulted(route: XdsRoute, fault: ActiveFault): XdsRoute {
  return {
    ...route,
    name: typeof route.name === "string" && route.name !== "" ? `${route.name} fault ${fault.id}` : `fault ${fault.id}`,
    typed_per_filter_config: { ...route.typed_per_filter_config, [FAULT_FILTER_NAME]: httpFault(fault) },
  };
}

/**
 * The fault as an envoy.extensions.filters.http.fault.v3.HTTPFault, shares as FractionalPercent
 * in millionths. The abort is a gRPC status (grpc_status), which grpc-js-xds and the other gRPC
 * clients fail the call with as it is; max_active_faults is left unset (no limit).
 */
function httpFault(fault: ActiveFault): Record<string, unknown> {
  const message: Record<string, unknown> = { "@type": HTTP_FAULT_TYPE_URL };
  if (fault.delay) {
    message.delay = { fixed_delay: durationMessage(fault.delay.delayMs), percentage: fractionOf(fault.delay.percent) };
  }
  if (fault.abort) {
    message.abort = { grpc_status: fault.abort.code, percentage: fractionOf(fault.abort.percent) };
  }
  return message;
}

function fractionOf(percent: number): Record<string, unknown> {
  return { numerator: Math.round(percent * 10_000), denominator: "MILLION" };
}

/** A gRPC method path and its parts: fully-qualified service name and method name. */
export interface MethodPath {
  /** "/package.Service/Method" */
  readonly path: string;
  /** "package.Service"; the whole path when it has an unexpected shape. */
  readonly service: string;
  /** "Method"; "" when the path has an unexpected shape. */
  readonly method: string;
}

/**
 * Paths parsed so far. A process calls and serves a fixed set of methods (grpc-js answers unknown
 * ones before any interceptor runs), so this stays small; the bound only guards against a caller
 * that would mint paths.
 */
const parsed = new Map<string, MethodPath>();
const MAX_CACHED_PATHS = 4_096;

/** Splits "/package.Service/Method" into its parts, once per path: later calls get the same object. */
export function methodOf(path: string): MethodPath {
  let method = parsed.get(path);
  if (method === undefined) {
    method = parse(path);
    if (parsed.size < MAX_CACHED_PATHS) parsed.set(path, method);
  }
  return method;
}

function parse(path: string): MethodPath {
  const match = /^\/([^/]+)\/([^/]+)$/.exec(path);
  return Object.freeze(match ? { path, service: match[1], method: match[2] } : { path, service: path, method: "" });
}

/**
 * Services every protomesh server hosts for the mesh's own use (health, reflection, ORCA load
 * reports): the control plane's probes and heartbeats call them every second on every endpoint, so
 * their calls log at debug, not info, unless they fail, and get no trace span.
 */
export const MESH_SERVICES: ReadonlySet<string> = new Set([
  "grpc.health.v1.Health",
  "grpc.reflection.v1.ServerReflection",
  "grpc.reflection.v1alpha.ServerReflection",
  "xds.service.orca.v3.OpenRcaService",
]);
